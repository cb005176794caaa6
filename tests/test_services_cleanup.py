from __future__ import annotations

import json
import logging
from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from regression_tracking.cleanup import batches as batches_module
from regression_tracking.cleanup.backup import row_to_dict
from regression_tracking.cleanup.locking import (
    CLEANUP_LOCK_CLASS,
    SHARD_COUNT_LOCK_CLASS,
    SHARD_LOCK_CLASS,
)
from regression_tracking.models import GroupHash, RegressionGroup, RegressionType
from regression_tracking.ops.log import record_extra
from regression_tracking.orphans import eligible_orphans
from regression_tracking.services import (
    BackupWriter,
    BatchReport,
    CleanupAction,
    CleanupAlreadyRunning,
    OrphanScope,
    StopReason,
    cleanup_orphaned_regressions,
    read_backup,
    restore_regression_groups,
)
from tests.factories import (
    GroupFactory,
    create_issue_for,
    create_old_orphan,
)

pytestmark = pytest.mark.django_db


def revive_discarded_issue(regression: RegressionGroup) -> None:
    """Point the regression's group-less GroupHash at a new Group."""
    grouphash = GroupHash.objects.get(project=regression.project_id, group=None)
    grouphash.group = GroupFactory.create(project=regression.project)
    grouphash.save()


def remaining_ids() -> list[int]:
    return list(RegressionGroup.objects.order_by("id").values_list("id", flat=True))


def table_snapshot() -> list[dict[str, object]]:
    return [row_to_dict(r) for r in RegressionGroup.objects.order_by("id")]


class TestDelete:
    def test_deletes_only_old_orphans(self, world) -> None:
        result = cleanup_orphaned_regressions()
        assert remaining_ids() == [world.linked.id, world.recent.id]
        assert result.as_dict() == {
            "dry_run": False,
            "action": "delete",
            "scanned": 5,
            "orphaned": 4,
            "by_reason": {"missing_grouphash": 3, "grouphash_without_group": 1},
            "too_recent": 1,
            "eligible": 3,
            "acted": 3,
            "would_act": 0,
            "skipped": 0,
            "changed_meanwhile": 0,
            "not_reached": 0,
            "batches": 1,
            "batch_sizes": {"min": 1000, "max": 1000, "last": 1000},
            "last_id": world.discarded.id,
            "standbys": None,
            "replication_lag_waits": 0,
            "replication_lag_wait_seconds": 0.0,
            "stop_reason": "done",
            "elapsed_seconds": result.as_dict()["elapsed_seconds"],
        }

    def test_min_age_zero_takes_recent_orphans_too(self, world) -> None:
        result = cleanup_orphaned_regressions(min_age=timedelta(0))
        assert remaining_ids() == [world.linked.id]
        assert (result.too_recent, result.acted) == (0, 4)

    def test_grouphash_for_another_key_does_not_save_a_row(self, world) -> None:
        GroupHash.objects.create(project=world.old_active.project, hash="0" * 32)
        cleanup_orphaned_regressions()
        assert world.old_active.id not in remaining_ids()


class TestDeactivate:
    def test_deactivates_old_active_orphans_and_leaves_the_rest(self, world) -> None:
        before = {row["id"]: row for row in table_snapshot()}
        result = cleanup_orphaned_regressions(action=CleanupAction.DEACTIVATE)
        after = {row["id"]: row for row in table_snapshot()}
        assert (result.eligible, result.acted) == (2, 2)
        for regression in (world.old_active, world.discarded):
            row = after[regression.id]
            assert row["active"] is False
            assert row["date_resolved"] is not None
            assert row["date_resolved"] == row["date_updated"]
        for regression in (world.linked, world.old_inactive, world.recent):
            assert after[regression.id] == before[regression.id]
        assert set(after) == set(before)

    def test_rerun_finds_nothing_left_to_deactivate(self, world) -> None:
        cleanup_orphaned_regressions(action=CleanupAction.DEACTIVATE)
        again = cleanup_orphaned_regressions(action=CleanupAction.DEACTIVATE)
        assert (again.orphaned, again.eligible, again.acted) == (4, 0, 0)


class TestDryRun:
    @pytest.mark.parametrize("action", list(CleanupAction))
    def test_changes_nothing_and_reports_what_would_be_done(self, world, action) -> None:
        before = table_snapshot()
        result = cleanup_orphaned_regressions(action=action, dry_run=True)
        assert table_snapshot() == before
        assert result.acted == 0
        assert result.would_act == result.eligible == (3 if action == "delete" else 2)
        assert result.batches == 1

    def test_dry_run_respects_max_rows(self, world) -> None:
        result = cleanup_orphaned_regressions(dry_run=True, max_rows=2, batch_size=1)
        assert (result.would_act, result.batches, result.stop_reason) == (
            2,
            2,
            StopReason.MAX_ROWS,
        )


class TestBatches:
    def test_batches_follow_candidate_id_order(self, world) -> None:
        reports: list[BatchReport] = []
        result = cleanup_orphaned_regressions(batch_size=2, on_batch=reports.append)
        assert [(r.first_id, r.last_id, r.acted_ids) for r in reports] == [
            (
                world.old_active.id,
                world.old_inactive.id,
                (world.old_active.id, world.old_inactive.id),
            ),
            (world.discarded.id, world.discarded.id, (world.discarded.id,)),
        ]
        assert [(r.number, r.done, r.eligible) for r in reports] == [(1, 2, 3), (2, 3, 3)]
        assert (result.batches, result.last_id) == (2, world.discarded.id)

    def test_max_rows_then_start_after_id_reaches_the_full_run(self, world) -> None:
        first = cleanup_orphaned_regressions(max_rows=2, batch_size=1)
        assert (first.acted, first.stop_reason, first.last_id) == (
            2,
            StopReason.MAX_ROWS,
            world.old_inactive.id,
        )
        second = cleanup_orphaned_regressions(scope=OrphanScope(after_id=first.last_id))
        assert (second.acted, second.stop_reason) == (1, StopReason.DONE)
        assert remaining_ids() == [world.linked.id, world.recent.id]

    def test_max_rows_then_plain_rerun_reaches_the_full_run(self, world) -> None:
        cleanup_orphaned_regressions(max_rows=1)
        cleanup_orphaned_regressions(max_rows=1)
        last = cleanup_orphaned_regressions()
        assert last.acted == 1
        assert remaining_ids() == [world.linked.id, world.recent.id]

    def test_max_runtime_stops_before_the_next_batch(self, world) -> None:
        result = cleanup_orphaned_regressions(max_runtime=timedelta(microseconds=1))
        assert (result.batches, result.acted, result.stop_reason) == (0, 0, StopReason.MAX_RUNTIME)
        assert result.last_id is None

    def test_should_stop_finishes_the_current_batch(self, world) -> None:
        reports: list[BatchReport] = []
        result = cleanup_orphaned_regressions(
            batch_size=1, on_batch=reports.append, should_stop=lambda: bool(reports)
        )
        assert (result.batches, result.acted, result.stop_reason) == (
            1,
            1,
            StopReason.INTERRUPTED,
        )
        assert result.last_id == world.old_active.id

    def test_interrupt_during_sleep_stops_promptly(self, world) -> None:
        reports: list[BatchReport] = []
        result = cleanup_orphaned_regressions(
            batch_size=1, sleep=30, on_batch=reports.append, should_stop=lambda: bool(reports)
        )
        assert result.elapsed_seconds < 5
        assert result.stop_reason == StopReason.INTERRUPTED

    def test_sleep_pauses_between_batches_only(self, world) -> None:
        now = [0.0]
        pauses: list[float] = []
        batches_at: list[float] = []

        def pause(seconds: float) -> None:
            pauses.append(seconds)
            now[0] += seconds

        result = cleanup_orphaned_regressions(
            batch_size=1,
            batch_time=0,
            sleep=0.25,
            clock=lambda: now[0],
            pause=pause,
            on_batch=lambda report: batches_at.append(now[0]),
        )
        assert result.batches == 3
        # 0.25 s in slices of at most 0.1 s, between batches 1-2 and 2-3, none after the last.
        assert pauses == pytest.approx([0.1, 0.1, 0.05] * 2)
        assert batches_at == pytest.approx([0.0, 0.25, 0.5])
        assert result.elapsed_seconds == pytest.approx(0.5)


class TestScope:
    def test_project_and_type(self, world) -> None:
        elsewhere = create_old_orphan()
        function = create_old_orphan(project=world.linked.project, type=RegressionType.FUNCTION)
        result = cleanup_orphaned_regressions(
            scope=OrphanScope(project_ids=(elsewhere.project_id,))
        )
        assert (result.scanned, result.acted) == (1, 1)
        result = cleanup_orphaned_regressions(
            scope=OrphanScope(regression_type=RegressionType.FUNCTION)
        )
        assert (result.acted, function.id in remaining_ids()) == (1, False)

    def test_ids_scope(self, world) -> None:
        result = cleanup_orphaned_regressions(
            scope=OrphanScope(ids=(world.linked.id, world.old_active.id, world.recent.id))
        )
        assert (result.scanned, result.eligible, result.acted) == (3, 1, 1)
        assert world.old_active.id not in remaining_ids()


class TestRaceRule:
    def test_issue_created_after_detection_saves_its_row(self, world) -> None:
        def create_issue_after_first_batch(report: BatchReport) -> None:
            if report.number == 1:
                create_issue_for(RegressionGroup.objects.get(id=world.old_inactive.id))

        result = cleanup_orphaned_regressions(
            batch_size=1, batch_time=0, on_batch=create_issue_after_first_batch
        )
        assert world.old_inactive.id in remaining_ids()
        assert (result.eligible, result.acted, result.batches) == (3, 2, 3)

    def test_discarded_issue_revived_after_detection_saves_its_row(self, world) -> None:
        def revive(report: BatchReport) -> None:
            if report.number == 1:
                revive_discarded_issue(world.discarded)

        cleanup_orphaned_regressions(batch_size=1, on_batch=revive)
        assert world.discarded.id in remaining_ids()

    def test_every_write_is_decided_by_the_orphan_rule(self, world) -> None:
        statements: list[str] = []

        def record(execute, sql, *args):
            if not sql.startswith(("SAVEPOINT", "RELEASE SAVEPOINT")):
                statements.append(sql)
            return execute(sql, *args)

        with connection.execute_wrapper(record):
            cleanup_orphaned_regressions(batch_size=2)
            cleanup_orphaned_regressions(action=CleanupAction.DEACTIVATE, min_age=timedelta(0))
        writes = [i for i, sql in enumerate(statements) if sql.startswith(("DELETE", "UPDATE"))]
        assert len(writes) == 3
        for index in writes:
            sql = statements[index]
            assert '"date_added" < ' in sql
            assert "RETURNING" in sql
            if connection.vendor == "postgresql":
                # Decided after the write, on the next statement's fresh snapshot.
                check = statements[index + 1]
                assert check.startswith("SELECT changed.id FROM unnest("), check
                assert "EXISTS(SELECT" in check.replace("EXISTS (", "EXISTS(")
                assert "IS NOT NULL" in check
                assert "EXISTS" not in sql
            else:
                assert "NOT EXISTS(SELECT" in sql.replace("NOT EXISTS (", "NOT EXISTS(")
                assert "IS NOT NULL" in sql

    @pytest.mark.postgresql
    @pytest.mark.parametrize("deactivate", [False, True])
    def test_the_write_compiled_once_is_the_one_compiled_per_batch(self, world, deactivate) -> None:
        now = timezone.now()
        write = batches_module.BatchWrite(
            deactivate=deactivate, cutoff=now - timedelta(hours=24), now=now, using="default"
        )
        for batch_ids in ([world.old_active.id], [world.linked.id, world.discarded.id]):
            compiled_once = write.statement(batch_ids)
            per_batch = write._sql(write.target(batch_ids))
            assert compiled_once == per_batch
            assert compiled_once[1].count(batches_module.id_array(batch_ids)) == 1

    @pytest.mark.postgresql
    def test_one_run_compiles_its_write_statement_once(self, world, monkeypatch) -> None:
        compiled: list[int] = []
        real_sql = batches_module.BatchWrite._sql

        def counting_sql(self, eligible):
            compiled.append(1)
            return real_sql(self, eligible)

        monkeypatch.setattr(batches_module.BatchWrite, "_sql", counting_sql)
        result = cleanup_orphaned_regressions(batch_size=1, batch_time=0)
        assert (result.batches, result.acted, len(compiled)) == (3, 3, 1)

    def test_the_orm_delete_of_eligible_orphans_is_one_fast_delete(
        self, world, django_assert_num_queries
    ) -> None:
        eligible = eligible_orphans(
            RegressionGroup.objects.filter(id__in=[world.old_active.id, world.linked.id]),
            cutoff=timezone.now() - timedelta(hours=24),
        )
        with django_assert_num_queries(1) as captured:
            deleted, _ = eligible.delete()
        assert deleted == 1
        [query] = captured.captured_queries
        assert query["sql"].startswith("DELETE FROM")
        assert "NOT EXISTS" in query["sql"]


class TestBackupAndRestore:
    def test_backup_delete_restore_gives_back_identical_rows(self, world, tmp_path) -> None:
        before = table_snapshot()
        path = tmp_path / "backup.jsonl"
        with BackupWriter(path) as backup:
            result = cleanup_orphaned_regressions(backup=backup, batch_size=2)
        assert result.acted == 3
        lines = path.read_text().splitlines()
        assert sorted(json.loads(line)["id"] for line in lines) == sorted(
            [world.old_active.id, world.old_inactive.id, world.discarded.id]
        )
        rows = read_backup(path.read_text().splitlines(keepends=True))
        restored = restore_regression_groups(rows)
        assert (restored.restored, restored.skipped_existing) == (3, 0)
        assert table_snapshot() == before

    def test_deactivate_backup_keeps_the_rows_before_the_change(self, world, tmp_path) -> None:
        before = {row["id"]: row for row in table_snapshot()}
        path = tmp_path / "backup.jsonl"
        with BackupWriter(path) as backup:
            cleanup_orphaned_regressions(action=CleanupAction.DEACTIVATE, backup=backup)
        saved = [json.loads(line) for line in path.read_text().splitlines()]
        assert saved == [
            json.loads(json.dumps(before[world.old_active.id])),
            json.loads(json.dumps(before[world.discarded.id])),
        ]

    def test_dry_run_writes_no_backup(self, world, tmp_path) -> None:
        path = tmp_path / "backup.jsonl"
        with BackupWriter(path) as backup:
            cleanup_orphaned_regressions(backup=backup, dry_run=True)
        # Opened only by its first write, which a dry run never makes.
        assert not path.exists()

    def test_row_saved_by_a_race_is_left_out_of_the_backup(self, world, tmp_path) -> None:
        def create_issue_after_first_batch(report: BatchReport) -> None:
            if report.number == 1:
                revive_discarded_issue(world.discarded)

        path = tmp_path / "backup.jsonl"
        with BackupWriter(path) as backup:
            cleanup_orphaned_regressions(
                backup=backup, batch_size=2, on_batch=create_issue_after_first_batch
            )
        assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == [
            world.old_active.id,
            world.old_inactive.id,
        ]


class TestReporting:
    def test_metrics(self, world, metrics_backend) -> None:
        cleanup_orphaned_regressions()
        assert (
            metrics_backend.total(
                "regression_tracking.orphans.detected", reason="missing_grouphash"
            )
            == 3
        )
        assert (
            metrics_backend.total(
                "regression_tracking.orphans.detected", reason="grouphash_without_group"
            )
            == 1
        )
        assert metrics_backend.total("regression_tracking.orphans.deleted") == 3
        cleanup_orphaned_regressions(action=CleanupAction.DEACTIVATE, min_age=timedelta(0))
        assert metrics_backend.total("regression_tracking.orphans.deactivated") == 1

    def test_dry_run_counts_detection_only(self, world, metrics_backend) -> None:
        cleanup_orphaned_regressions(dry_run=True)
        assert metrics_backend.total("regression_tracking.orphans.detected") == 4
        assert metrics_backend.total("regression_tracking.orphans.deleted") == 0

    def test_logs_started_and_completed_with_counts(self, world, caplog) -> None:
        caplog.set_level(logging.INFO, logger="regression_tracking")
        cleanup_orphaned_regressions(max_rows=5)
        started, completed = caplog.records
        assert started.getMessage() == "regression_tracking.cleanup.started"
        assert record_extra(started)["max_rows"] == 5
        assert completed.getMessage() == "regression_tracking.cleanup.completed"
        assert {k: record_extra(completed)[k] for k in ("orphaned", "acted", "stop_reason")} == {
            "orphaned": 4,
            "acted": 3,
            "stop_reason": "done",
        }


class TestValidation:
    @pytest.mark.parametrize(
        ("arguments", "message"),
        [
            ({"batch_size": 0}, "batch_size must be between 1 and 10000"),
            ({"batch_size": 10_001}, "batch_size must be between 1 and 10000"),
            ({"max_rows": 0}, "max_rows must be at least 1"),
            ({"min_age": timedelta(seconds=-1)}, "min_age must not be negative"),
            ({"max_runtime": timedelta(0)}, "max_runtime must be positive, got 0s$"),
            ({"sleep": -1.0}, "sleep must not be negative"),
        ],
    )
    def test_bad_arguments_raise_before_anything_changes(
        self, world, arguments, message, django_assert_num_queries
    ) -> None:
        with django_assert_num_queries(0), pytest.raises(ValueError, match=message):
            cleanup_orphaned_regressions(**arguments)

    def test_unknown_action_is_a_value_error(self, world) -> None:
        with pytest.raises(ValueError, match="'archive' is not a valid CleanupAction"):
            cleanup_orphaned_regressions(action="archive")


def _other_connection() -> psycopg.Connection[tuple[object, ...]]:
    """A second connection to the test database, committing on its own."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params, autocommit=True)


@pytest.mark.postgresql
class TestPostgreSQLConcurrency:
    def test_second_run_is_refused_while_the_lock_is_held(self, world) -> None:
        before = table_snapshot()
        with _other_connection() as other:
            other.execute("SELECT pg_advisory_lock(%s, 0)", [CLEANUP_LOCK_CLASS])
            with pytest.raises(CleanupAlreadyRunning):
                cleanup_orphaned_regressions()
            # Released before the connection closes: the server lets a closed session's locks
            # go only once it has noticed the close, which a loaded machine can delay.
            other.execute("SELECT pg_advisory_unlock(%s, 0)", [CLEANUP_LOCK_CLASS])
        assert table_snapshot() == before
        assert cleanup_orphaned_regressions().acted == 3

    def test_lock_is_released_after_a_run(self, world) -> None:
        cleanup_orphaned_regressions(dry_run=True)
        with _other_connection() as other:
            row = other.execute("SELECT pg_try_advisory_lock(%s, 0)", [CLEANUP_LOCK_CLASS])
            assert row.fetchone() == (True,)


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
class TestPostgreSQLTwoConnections:
    def test_grouphash_committed_by_another_connection_saves_its_row(self, world) -> None:
        def commit_issue_elsewhere(report: BatchReport) -> None:
            if report.number != 1:
                return
            with _other_connection() as other:
                group_id = other.execute(
                    "INSERT INTO sentry_groupedmessage (project_id, logger, level, message,"
                    " status, times_seen, last_seen, first_seen, type)"
                    " VALUES (%s, '', 40, 'm', 0, 1, now(), now(), 1) RETURNING id",
                    [world.discarded.project_id],
                ).fetchone()[0]
                other.execute(
                    "UPDATE sentry_grouphash SET group_id = %s"
                    " WHERE project_id = %s AND group_id IS NULL",
                    [group_id, world.discarded.project_id],
                )

        result = cleanup_orphaned_regressions(batch_size=1, on_batch=commit_issue_elsewhere)
        assert world.discarded.id in remaining_ids()
        assert (result.eligible, result.acted) == (3, 2)

    def test_locked_rows_make_a_batch_retry_then_skip(self, world, monkeypatch) -> None:
        monkeypatch.setattr(batches_module, "LOCK_TIMEOUT", "100ms")
        monkeypatch.setattr(batches_module, "LOCK_RETRY_PAUSE_SECONDS", 0.01)
        with _other_connection() as other, other.transaction():
            other.execute(
                "SELECT id FROM sentry_regressiongroup WHERE id = %s FOR UPDATE",
                [world.old_inactive.id],
            )
            result = cleanup_orphaned_regressions(batch_size=1, batch_time=0)
        assert (result.acted, result.skipped, result.batches) == (2, 1, 3)
        assert remaining_ids() == [world.linked.id, world.old_inactive.id, world.recent.id]
        assert cleanup_orphaned_regressions().acted == 1


class TestShards:
    def test_shard_scope_takes_projects_by_id_modulo(self) -> None:
        regressions = [create_old_orphan() for _ in range(4)]
        result = cleanup_orphaned_regressions(scope=OrphanScope(shard=(1, 2)))
        odd = {r.id for r in regressions if r.project_id % 2 == 1}
        assert result.acted == len(odd)
        assert not odd & set(remaining_ids())

    @pytest.mark.parametrize("shard", [(2, 2), (-1, 2), (0, 0), (0, 5000)])
    def test_bad_shard(self, shard) -> None:
        with pytest.raises(ValueError, match="shard must be k/n"):
            cleanup_orphaned_regressions(scope=OrphanScope(shard=shard))


@pytest.mark.postgresql
class TestShardLocks:
    def test_shards_run_side_by_side_but_not_beside_an_unsharded_run(self, world) -> None:
        with _other_connection() as other:
            other.execute("SELECT pg_advisory_lock_shared(%s, 0)", [CLEANUP_LOCK_CLASS])
            other.execute("SELECT pg_advisory_lock(%s, %s)", [SHARD_LOCK_CLASS, 2 * 1024 + 0])
            # Shard 1/2 runs while 0/2 holds its locks ...
            cleanup_orphaned_regressions(scope=OrphanScope(shard=(1, 2)), dry_run=True)
            # ... but neither 0/2 again nor an unsharded run may.
            with pytest.raises(CleanupAlreadyRunning):
                cleanup_orphaned_regressions(scope=OrphanScope(shard=(0, 2)), dry_run=True)
            with pytest.raises(CleanupAlreadyRunning):
                cleanup_orphaned_regressions(dry_run=True)

    def test_a_shard_of_another_count_is_refused_while_shards_run(self, world) -> None:
        with _other_connection() as other:
            # What shard 0/2 holds while it runs.
            other.execute("SELECT pg_advisory_lock_shared(%s, 0)", [CLEANUP_LOCK_CLASS])
            other.execute("SELECT pg_advisory_lock_shared(%s, 2)", [SHARD_COUNT_LOCK_CLASS])
            other.execute("SELECT pg_advisory_lock(%s, %s)", [SHARD_LOCK_CLASS, 2 * 1024 + 0])
            # 0/4 covers rows of 0/2 as well as of 1/2: it must not run beside them.
            with pytest.raises(CleanupAlreadyRunning, match=r"another count \(/2\)"):
                cleanup_orphaned_regressions(scope=OrphanScope(shard=(0, 4)), dry_run=True)
            cleanup_orphaned_regressions(scope=OrphanScope(shard=(1, 2)), dry_run=True)
        # Once the shards of count 2 are gone, 0/4 runs, and its count lock was released.
        cleanup_orphaned_regressions(scope=OrphanScope(shard=(0, 4)), dry_run=True)
        with _other_connection() as other:
            other.execute("SELECT pg_advisory_lock_shared(%s, 2)", [SHARD_COUNT_LOCK_CLASS])
            cleanup_orphaned_regressions(scope=OrphanScope(shard=(1, 2)), dry_run=True)
