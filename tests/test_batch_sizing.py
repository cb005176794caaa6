"""Batches sized by time: the sizer's rule, and the cleanup's batches growing and shrinking."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from regression_tracking.cleanup.batches import BatchWrite, id_array, set_batch_settings
from regression_tracking.cleanup.sizing import BatchSizer
from regression_tracking.models import RegressionGroup
from regression_tracking.services import (
    MAX_BATCH_SIZE,
    CleanupArgumentError,
    cleanup_orphaned_regressions,
)
from tests import factories
from tests.utils import run_cleanup

OLD = timedelta(days=3)


def test_a_fast_batch_at_most_doubles_the_next() -> None:
    sizer = BatchSizer(first=100, target_seconds=0.5)
    sizer.record(rows=100, seconds=0.001)
    assert sizer.size == 200
    sizer.record(rows=200, seconds=0.0)
    assert sizer.size == 400


def test_a_slow_batch_shrinks_the_next_to_the_rate_it_showed() -> None:
    sizer = BatchSizer(first=1000, target_seconds=0.5)
    sizer.record(rows=1000, seconds=2.0)
    assert sizer.size == 250
    sizer.record(rows=250, seconds=0.4)
    assert sizer.size == 312


def test_sizes_stay_within_one_and_the_largest_batch() -> None:
    sizer = BatchSizer(first=MAX_BATCH_SIZE, target_seconds=0.5)
    sizer.record(rows=MAX_BATCH_SIZE, seconds=0.01)
    assert sizer.size == MAX_BATCH_SIZE
    small = BatchSizer(first=3, target_seconds=0.5)
    small.record(rows=3, seconds=600.0)
    assert small.size == 1


def test_a_short_batch_counts_by_its_rate() -> None:
    # The last batch of a run, or one cut by --max-rows, holds fewer rows than the size chosen.
    sizer = BatchSizer(first=1000, target_seconds=0.5)
    sizer.record(rows=10, seconds=0.5)
    assert sizer.size == 10


def test_no_target_keeps_the_first_size() -> None:
    sizer = BatchSizer(first=700, target_seconds=0.0)
    for seconds in (30.0, 0.0):
        sizer.start_batch()
        sizer.record(rows=700, seconds=seconds)
    assert sizer.size == 700
    assert sizer.used() == {"min": 700, "max": 700, "last": 700}


def test_a_batch_skipped_because_issues_kept_appearing_halves_the_next() -> None:
    sizer = BatchSizer(first=1000, target_seconds=0.5)
    sizer.start_batch()
    sizer.halve()
    assert sizer.start_batch() == 500
    for _ in range(12):
        sizer.halve()
    assert sizer.start_batch() == 1


def test_used_reports_the_sizes_chosen_for_the_batches_run() -> None:
    sizer = BatchSizer(first=100, target_seconds=0.5)
    assert sizer.used() is None
    for _ in range(3):
        sizer.start_batch()
        sizer.record(rows=sizer.size, seconds=0.001)
    assert sizer.used() == {"min": 100, "max": 400, "last": 400}


def _orphans(count: int) -> None:
    project = factories.ProjectFactory.create()
    added = timezone.now() - OLD
    RegressionGroup.objects.bulk_create(
        factories.RegressionGroupFactory.build_batch(count, project=project, date_added=added)
    )


@pytest.mark.django_db(transaction=True)
def test_quick_batches_grow_by_at_most_twice_a_step() -> None:
    _orphans(700)
    sizes: list[int] = []
    result = cleanup_orphaned_regressions(
        batch_size=10, batch_time=0.5, on_batch=lambda batch: sizes.append(batch.size)
    )
    assert result.acted == 700
    # The sizes chosen; the last batch held the 70 rows left.
    assert sizes == [10, 20, 40, 80, 160, 320, 70]
    assert result.batch_sizes == {"min": 10, "max": 640, "last": 640}
    assert result.as_dict()["batch_sizes"] == {"min": 10, "max": 640, "last": 640}


@pytest.mark.django_db(transaction=True)
def test_zero_batch_time_keeps_batch_size_fixed() -> None:
    _orphans(95)
    sizes: list[int] = []
    result = cleanup_orphaned_regressions(
        batch_size=30, batch_time=0, on_batch=lambda batch: sizes.append(batch.size)
    )
    assert sizes == [30, 30, 30, 5]
    assert result.batch_sizes == {"min": 30, "max": 30, "last": 30}


@pytest.mark.django_db(transaction=True)
def test_a_dry_run_keeps_batch_size_fixed() -> None:
    # A dry run writes nothing, so its batches have no transaction to time.
    _orphans(95)
    sizes: list[int] = []
    result = cleanup_orphaned_regressions(
        dry_run=True, batch_size=30, batch_time=0.5, on_batch=lambda b: sizes.append(b.size)
    )
    assert sizes == [30, 30, 30, 5]
    assert result.batch_sizes == {"min": 30, "max": 30, "last": 30}


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_slow_batches_shrink_toward_the_time_target() -> None:
    # A real trigger makes each deleted row cost 4 ms: a batch of 100 rows takes 0.4 s, four times
    # the 0.1 s target, so the next batch holds about a quarter as many rows.
    _orphans(160)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION slow_delete() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN PERFORM pg_sleep(0.004); RETURN OLD; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER slow_delete BEFORE DELETE ON sentry_regressiongroup"
            " FOR EACH ROW EXECUTE FUNCTION slow_delete()"
        )
    try:
        sizes: list[int] = []
        result = cleanup_orphaned_regressions(
            batch_size=100, batch_time=0.1, on_batch=lambda batch: sizes.append(batch.size)
        )
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER slow_delete ON sentry_regressiongroup")
            cursor.execute("DROP FUNCTION slow_delete()")
    assert result.acted == 160
    assert sizes[0] == 100
    assert 12 <= sizes[1] <= 30, sizes
    assert result.batch_sizes is not None
    assert result.batch_sizes["max"] == 100
    assert result.batch_sizes["min"] <= 30


@pytest.mark.parametrize("value", [-0.1, 60.5, float("nan"), float("inf")])
def test_batch_time_out_of_range_is_refused(value: float) -> None:
    with pytest.raises(CleanupArgumentError) as caught:
        cleanup_orphaned_regressions(batch_time=value)
    assert caught.value.parameter == "batch_time"


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_a_large_batch_probes_the_grouphash_index_row_by_row() -> None:
    # Past a few thousand ids, PostgreSQL's estimate prefers hashing every live GroupHash to an
    # index probe per row; on a real table that hash is built again for every batch. The batch's
    # transaction settings keep its check (the write's orphan rule) a nested loop over the
    # (project_id, hash) index.
    project = factories.ProjectFactory.create()
    group = factories.GroupFactory.create(project=project)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO sentry_regressiongroup (project_id, type, fingerprint, version, active,"
            " date_regressed, date_added, date_updated, baseline, regressed)"
            " SELECT %s, 0, lpad(n::text, 32, '0'), 1, true, now(), now() - interval '3 days',"
            " now(), 1, 2 FROM generate_series(1, 30000) n",
            [project.id],
        )
        cursor.execute(
            "INSERT INTO sentry_grouphash (project_id, hash, group_id)"
            " SELECT %s, md5(lpad(n::text, 32, '0')), %s FROM generate_series(1, 60000, 2) n",
            [project.id, group.id],
        )
        cursor.execute(
            "INSERT INTO sentry_grouphash (project_id, hash, group_id)"
            " SELECT %s, md5('other' || n), %s FROM generate_series(1, 100000) n",
            [project.id, group.id],
        )
        cursor.execute("ANALYZE sentry_regressiongroup, sentry_grouphash")
    now = timezone.now()
    write = BatchWrite(deactivate=False, cutoff=now - OLD / 2, now=now, using="default")
    ids = list(RegressionGroup.objects.order_by("id").values_list("id", flat=True)[:MAX_BATCH_SIZE])
    plans = {}
    with transaction.atomic(), connection.cursor() as cursor:
        # What the write's RETURNING gives the check: (id, project id, issue hash).
        cursor.execute(
            "SELECT id, project_id, md5(fingerprint) FROM sentry_regressiongroup"
            " WHERE id = ANY(%s::bigint[]) ORDER BY id",
            [id_array(ids)],
        )
        changed = cursor.fetchall()
        assert write._live_keys is not None
        check, check_params = write._live_keys
        arrays = tuple(id_array(column) for column in zip(*changed, strict=True))
        cursor.execute(f"EXPLAIN {check}", (*arrays, *check_params))
        plans["default"] = "\n".join(row[0] for row in cursor.fetchall())
        set_batch_settings("default")
        cursor.execute(f"EXPLAIN {check}", (*arrays, *check_params))
        plans["batch"] = "\n".join(row[0] for row in cursor.fetchall())
    # The data is such that the default plan hashes: the settings are what makes the difference.
    assert "Hash" in plans["default"], plans["default"]
    assert "Nested Loop" in plans["batch"], plans["batch"]
    assert "Hash" not in plans["batch"], plans["batch"]
    assert "Merge" not in plans["batch"], plans["batch"]


@pytest.mark.django_db(transaction=True)
def test_the_summary_says_which_sizes_the_batches_had() -> None:
    _orphans(70)
    adapted = run_cleanup("--batch-size", "10")
    assert "batches: 3\nbatch sizes: 10 to 40, last 40 (adapted to --batch-time 0.5s)\n" in adapted
    _orphans(70)
    fixed = run_cleanup("--batch-size", "10", "--batch-time", "0")
    assert "batches: 7\nbatch sizes: 10 to 10, last 10 (fixed)\n" in fixed
