"""A write that waits on a row lock still saves a row whose issue appeared during the wait.

In READ COMMITTED a DELETE or UPDATE that waits on a row lock re-checks only that row when the lock
is released; a ``NOT EXISTS`` on GroupHash in its WHERE keeps the statement's starting snapshot. So
each test holds a row lock on an orphan from another connection, lets the write path wait on it,
commits a live GroupHash for that row during the wait, then releases the lock: the row must stay.
Every path that writes on the orphan rule is tried: the command (delete and deactivate, with and
without a backup), the admin's selection cleanup and the detector mirror's orphan deactivation.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connections, transaction
from django.utils import timezone

from regression_tracking.admin.queries import cleanup_selected_orphans
from regression_tracking.models import RegressionGroup
from regression_tracking.services import CleanupAction
from regression_tracking.statistical_detectors.writes import deactivate_orphaned_versions
from tests.reliability import (
    CommandProcess,
    backup_ids,
    build_world,
    current_database_name,
    give_live_issue,
    record_figures,
)
from tests.utils import other_connection

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]

# How long the test waits for the write path to block on the held row lock.
WAIT_FOR_BLOCK_SECONDS = 20.0


def _lock_waiters(exclude_pid: int) -> list[int]:
    """Pids of this database's backends waiting on a lock (other than the lock holder)."""
    with other_connection() as other:
        rows = other.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'"
            " AND pid <> %s",
            [current_database_name(), exclude_pid],
        ).fetchall()
    return [int(pid) for (pid,) in rows]  # type: ignore[call-overload]


@contextmanager
def _row_lock(row_id: int) -> Iterator[psycopg.Connection[Any]]:
    """Hold ``FOR UPDATE`` on one RegressionGroup from another connection until the block ends."""
    holder = other_connection()
    holder.autocommit = False
    try:
        holder.execute("SELECT id FROM sentry_regressiongroup WHERE id = %s FOR UPDATE", [row_id])
        yield holder
    finally:
        holder.rollback()
        holder.close()


def _wait_until_blocked(holder: psycopg.Connection[Any], still_running: Callable[[], bool]) -> None:
    holder_pid = holder.info.backend_pid
    deadline = time.monotonic() + WAIT_FOR_BLOCK_SECONDS
    while not _lock_waiters(holder_pid):
        assert still_running(), "the write path ended without waiting on the held row"
        assert time.monotonic() < deadline, "the write path never waited on the held row"
        time.sleep(0.02)


def _issue_appears_during_the_wait(target: RegressionGroup, start: Callable[[], Any]) -> Any:
    """Hold ``target``'s row, start the write path, give it an issue while it waits, release."""
    with _row_lock(target.id) as holder:
        running = start()
        _wait_until_blocked(holder, running.is_alive)
        give_live_issue(target)
        holder.commit()
    return running


class _Thread(threading.Thread):
    """A write path run in a thread with its own database connection; keeps its return value."""

    def __init__(self, work: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.work = work
        self.value: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = self.work()
        except BaseException as error:  # re-raised in the test's thread
            self.error = error
        finally:
            connections.close_all()

    def result(self) -> Any:
        self.join(timeout=60)
        assert not self.is_alive(), "the write path did not finish"
        if self.error is not None:
            raise self.error
        return self.value


class _Process:
    """The command in a subprocess, with ``is_alive`` for the wait loop."""

    def __init__(self, *args: str) -> None:
        self.command = CommandProcess(*args, application_name="lock_wait_test")

    def is_alive(self) -> bool:
        return self.command.process.poll() is None


@pytest.mark.parametrize(
    ("action", "backup"),
    [("delete", False), ("delete", True), ("deactivate", False), ("deactivate", True)],
)
def test_the_command_keeps_a_row_whose_issue_appeared_while_it_waited(
    action: str, backup: bool, tmp_path: Path
) -> None:
    world = build_world(orphans=6)
    target = RegressionGroup.objects.get(id=world.eligible[2])
    args = ["--action", action, "--batch-size", "100", "--format", "json"]
    if backup:
        args += ["--backup", str(tmp_path / "backup.jsonl")]

    running = _issue_appears_during_the_wait(target, lambda: _Process(*args))
    code = running.command.wait(timeout=60)

    assert code == 0, running.command.stderr
    others = set(world.eligible) - {target.id}
    row = RegressionGroup.objects.filter(id=target.id).first()
    assert row is not None, "the row whose issue appeared during the lock wait was deleted"
    assert row.active, "the row whose issue appeared during the lock wait was deactivated"
    if action == "delete":
        assert not RegressionGroup.objects.filter(id__in=others).exists()
    else:
        assert not RegressionGroup.objects.filter(id__in=others, active=True).exists()
    if backup:
        # The backup holds what the run changed, deleted or deactivated.
        assert backup_ids(tmp_path / "backup.jsonl") == others
    summary = json.loads(running.command.stdout)
    assert summary["acted"] == len(others)
    assert summary["changed_meanwhile"] == 1
    assert (
        summary["acted"]
        + summary["skipped"]
        + summary["changed_meanwhile"]
        + summary["not_reached"]
        == summary["eligible"]
    )
    record_figures(
        f"lock_wait_{action}{'_backup' if backup else ''}", rows_lost=0 if row.active else 1
    )


@pytest.mark.parametrize("action", [CleanupAction.DELETE, CleanupAction.DEACTIVATE])
def test_the_admin_selection_keeps_a_row_whose_issue_appeared_while_it_waited(
    action: CleanupAction,
) -> None:
    world = build_world(orphans=3)
    target = RegressionGroup.objects.get(id=world.eligible[1])

    running = _issue_appears_during_the_wait(
        target,
        lambda: _started(
            _Thread(lambda: cleanup_selected_orphans(action=action, ids=tuple(world.eligible)))
        ),
    )
    outcome = running.result()

    row = RegressionGroup.objects.get(id=target.id)
    assert row.active
    assert outcome.counts["acted"] == 2
    assert outcome.counts["changed_meanwhile"] == 1


def test_the_detector_mirror_keeps_a_version_whose_issue_appeared_while_it_waited() -> None:
    world = build_world(orphans=3)
    target = RegressionGroup.objects.get(id=world.eligible[0])
    now = timezone.now()

    def deactivate() -> set[int]:
        with transaction.atomic():
            return deactivate_orphaned_versions(
                world.eligible, now=now, cutoff=now - timedelta(hours=24)
            )

    running = _issue_appears_during_the_wait(target, lambda: _started(_Thread(deactivate)))
    deactivated = running.result()

    assert deactivated == set(world.eligible[1:])
    assert RegressionGroup.objects.get(id=target.id).active


def _started(thread: _Thread) -> _Thread:
    thread.start()
    return thread
