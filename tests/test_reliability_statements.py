"""Every statement bounded, in real subprocesses against a locked table.

Behind an ``ACCESS EXCLUSIVE`` lock (held, or queued: an ``ALTER TABLE`` waiting behind a reader)
detection waits at most its lock timeout, then fails naming the session that holds the table;
SIGTERM or SIGINT while it waits cancels the statement, releases the advisory lock and ends the run
with stop reason ``interrupted``.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from regression_tracking.cleanup.locking import CLEANUP_LOCK_CLASS
from regression_tracking.models import RegressionGroup
from tests.reliability import CommandProcess, record_figures
from tests.utils import other_connection

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]

TABLE = RegressionGroup._meta.db_table
# A run must end this long after its bound (max-runtime, or a signal) at the latest.
SLACK_SECONDS = 8.0


@pytest.fixture
def orphans() -> None:
    from tests.factories import create_old_orphan

    for _ in range(3):
        create_old_orphan()


@pytest.fixture
def table_locked() -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with other_connection() as holder:
        holder.autocommit = False
        holder.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
        yield holder
        holder.rollback()


def _backend_pid(holder: psycopg.Connection[tuple[object, ...]]) -> int:
    return int(holder.info.backend_pid)


def _wait_until_waiting_on_a_lock(application_name: str, *, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    with other_connection() as watcher:
        while time.monotonic() < deadline:
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = %s AND wait_event_type = 'Lock'",
                [application_name],
            ).fetchone()
            if row and row[0]:
                return
            time.sleep(0.05)
    raise AssertionError(f"{application_name} never waited on a lock")


def _advisory_lock_is_free() -> bool:
    with other_connection() as probe:
        row = probe.execute("SELECT pg_try_advisory_lock(%s, 0)", [CLEANUP_LOCK_CLASS]).fetchone()
        assert row is not None
        if row[0]:
            probe.execute("SELECT pg_advisory_unlock(%s, 0)", [CLEANUP_LOCK_CLASS])
        return bool(row[0])


def test_max_runtime_bounds_detection_behind_a_held_table_lock(orphans, table_locked) -> None:
    run = CommandProcess("--max-runtime", "3s", application_name="bounded-held")
    code = run.wait(timeout=3 + SLACK_SECONDS)
    assert code == 1, (run.stdout, run.stderr)
    assert f"pid {_backend_pid(table_locked)} holds AccessExclusiveLock on {TABLE}" in run.stderr
    assert "LOCK TABLE" in run.stderr
    assert "Traceback" not in run.stderr
    assert run.elapsed < 3 + SLACK_SECONDS
    assert _advisory_lock_is_free()
    table_locked.rollback()
    assert RegressionGroup.objects.count() == 3
    record_figures("held_table_lock", max_runtime_s=3, exit=code, seconds=round(run.elapsed, 2))


def test_max_runtime_bounds_detection_behind_a_queued_alter_table(orphans) -> None:
    with other_connection() as reader, other_connection() as alterer:
        reader.autocommit = False
        reader.execute(f"SELECT 1 FROM {TABLE} LIMIT 1")
        alter_pid = int(alterer.info.backend_pid)

        def queue_alter_table() -> None:
            # It queues behind the reader; every later reader queues behind it. Cancelled at the
            # end, so the table keeps its columns.
            with pytest.raises(psycopg.errors.QueryCanceled):
                alterer.execute(f"ALTER TABLE {TABLE} ADD COLUMN probe integer")

        alter = threading.Thread(target=queue_alter_table, daemon=True)
        alter.start()
        try:
            run = CommandProcess("--max-runtime", "3s", application_name="bounded-queued")
            code = run.wait(timeout=3 + SLACK_SECONDS)
        finally:
            alterer.cancel_safe()
            alter.join(timeout=10)
            reader.rollback()
    assert code == 1, (run.stdout, run.stderr)
    assert f"pid {alter_pid} waits for AccessExclusiveLock on {TABLE}" in run.stderr
    assert "ALTER TABLE" in run.stderr
    assert run.elapsed < 3 + SLACK_SECONDS
    assert _advisory_lock_is_free()
    record_figures("queued_alter_table", max_runtime_s=3, exit=code, seconds=round(run.elapsed, 2))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_cancels_the_waiting_statement(orphans, table_locked, signum) -> None:
    name = f"bounded-{signum.name.lower()}"
    run = CommandProcess("--format", "json", application_name=name)
    _wait_until_waiting_on_a_lock(name)
    sent = time.monotonic()
    run.process.send_signal(signum)
    code = run.wait(timeout=SLACK_SECONDS)
    ended_after = time.monotonic() - sent
    assert code == 0, (run.stdout, run.stderr)
    result = json.loads(run.stdout)
    assert (result["stop_reason"], result["acted"], result["scanned"]) == ("interrupted", 0, 0)
    assert ended_after < SLACK_SECONDS
    assert _advisory_lock_is_free()
    table_locked.rollback()
    assert RegressionGroup.objects.count() == 3
    record_figures(f"signal_while_waiting_{signum.name}", exit=code, seconds=round(ended_after, 2))
