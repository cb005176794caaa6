"""Hand-written alternatives to parts of the cleanup, measured on the same data.

They price changes to code the benchmark does not own (the batch statements of
``cleanup/run.py``, an index that would need a migration). The dry run's per-batch re-checks
and the one-placeholder-per-id batches measured here have since left the cleanup, on these
figures. Each write runs on a fresh copy of the data; the index is created for the measurement and
dropped."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import partial
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from benchmarks import dataset
from benchmarks.floor import FLOOR_COUNT, OLD_ENOUGH, ORPHAN, run_statement
from regression_tracking.services import detect_orphans

# The index that makes the anti-join's probe index-only: the live GroupHashes by issue key.
LIVE_KEY_INDEX = "benchmark_grouphash_live_key"
CREATE_LIVE_KEY_INDEX = (
    f"CREATE INDEX {LIVE_KEY_INDEX} ON sentry_grouphash (project_id, hash)"
    " WHERE group_id IS NOT NULL"
)

# The batch statements, with the ids as one placeholder each (the ORM's id__in, and the writes of
# cleanup/run.py before they took an array) or as one array parameter.
IDS_IN_LIST = "rg.id IN ({placeholders})"
IDS_IN_ARRAY = "rg.id = ANY(%s::bigint[])"
RECHECK = f"SELECT rg.id FROM sentry_regressiongroup rg WHERE {{ids}} AND {OLD_ENOUGH} AND {ORPHAN}"
DELETE = (
    f"DELETE FROM sentry_regressiongroup rg WHERE {{ids}} AND {OLD_ENOUGH} AND {ORPHAN}"
    " RETURNING rg.id"
)


def orphan_id_batches(batch_size: int) -> list[list[int]]:
    """The orphans' ids in id order, cut in batches as the cleanup cuts them."""
    ids = [
        row[0]
        for row in dataset.execute(
            f"SELECT rg.id FROM sentry_regressiongroup rg WHERE {ORPHAN} ORDER BY rg.id"
        )
    ]
    return [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]


def run_batches(
    template: str, batches: Sequence[list[int]], *, as_array: bool
) -> tuple[float, int]:
    """One statement per batch, each in its own transaction; the seconds and rows they return."""
    rows = 0
    started = time.perf_counter()
    for ids in batches:
        if as_array:
            sql, params = template.format(ids=IDS_IN_ARRAY), [list(ids)]
        else:
            placeholders = ", ".join(["%s"] * len(ids))
            sql = template.format(ids=IDS_IN_LIST.format(placeholders=placeholders))
            params = list(ids)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows += len(cursor.fetchall())
    return time.perf_counter() - started, rows


def detection_in_process() -> float:
    """What the dry run costs without its per-batch re-checks: the count, the selection and the
    bookkeeping the cleanup does with it, in this process."""
    started = time.perf_counter()
    cutoff = timezone.now() - timedelta(hours=24)
    detection = detect_orphans(cutoff=cutoff)
    assert len(detection.eligible_ids) == detection.orphaned
    return time.perf_counter() - started


def best_of(repeat: int, measure: Callable[[], float]) -> float:
    return min(measure() for _ in range(repeat))


def measure_alternatives(*, batch_size: int, repeat: int, orphans: int) -> dict[str, Any]:
    """Seconds of each alternative, from the snapshot's data, which each write puts back."""
    batches = orphan_id_batches(batch_size)
    figures: dict[str, Any] = {
        "detection_without_batch_rechecks_in_process": best_of(repeat, detection_in_process)
    }

    def rechecks(as_array: bool) -> float:
        seconds, rows = run_batches(RECHECK, batches, as_array=as_array)
        assert rows == orphans, rows
        return seconds

    def deletes(as_array: bool) -> float:
        seconds, rows = run_batches(DELETE, batches, as_array=as_array)
        assert rows == orphans, rows
        dataset.restore()
        return seconds

    # Each delete costs a restore of the whole table: one run of each.
    for label, as_array in (("id_list", False), ("id_array", True)):
        figures[f"recheck_batches_{label}"] = best_of(repeat, partial(rechecks, as_array))
        figures[f"delete_batches_{label}"] = deletes(as_array)
    dataset.execute(CREATE_LIVE_KEY_INDEX)
    try:
        dataset.vacuum(("sentry_grouphash",))
        figures["with_live_key_index"] = {
            "floor_count": best_of(repeat, lambda: run_statement(FLOOR_COUNT).seconds),
            "detection_without_batch_rechecks_in_process": best_of(repeat, detection_in_process),
            "recheck_batches_id_array": best_of(repeat, partial(rechecks, True)),
            "delete_batches_id_array": deletes(True),
        }
    finally:
        dataset.execute(f"DROP INDEX IF EXISTS {LIVE_KEY_INDEX}")
    return figures
