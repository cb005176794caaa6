"""An issue that appears while a batch's write runs still saves its row.

The write decides on the snapshot its statement starts with. Creating an issue locks no
RegressionGroup, so an issue committed after that snapshot and before the batch commits is seen by
nothing the write does itself. Each test pauses the write on one row (a ``pg_sleep`` in a row
trigger installed for the test), commits a live GroupHash for that row during the pause, and lets
the write go on: when its batch commits, the row must still be there and still active.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connections

from regression_tracking.admin.queries import cleanup_selected_orphans
from regression_tracking.models import RegressionGroup
from regression_tracking.services import CleanupAction
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

PAUSE_SECONDS = 3
WAIT_FOR_PAUSE_SECONDS = 20.0


def _install_pause(row_id: int) -> None:
    """A trigger that sleeps while a DELETE or UPDATE touches the row ``row_id``."""
    with other_connection() as setup:
        setup.execute(
            "CREATE FUNCTION test_pause_on_row() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN IF OLD.id = {int(row_id)} THEN PERFORM pg_sleep({PAUSE_SECONDS}); END IF;"
            " IF TG_OP = 'DELETE' THEN RETURN OLD; END IF; RETURN NEW; END $$"
        )
        setup.execute(
            "CREATE TRIGGER test_pause_on_row BEFORE DELETE OR UPDATE ON sentry_regressiongroup"
            " FOR EACH ROW EXECUTE FUNCTION test_pause_on_row()"
        )


def _remove_pause() -> None:
    with other_connection() as setup:
        setup.execute("DROP TRIGGER IF EXISTS test_pause_on_row ON sentry_regressiongroup")
        setup.execute("DROP FUNCTION IF EXISTS test_pause_on_row()")


@pytest.fixture
def paused_write() -> Iterator[None]:
    yield
    _remove_pause()


def _wait_until_paused(still_running: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_FOR_PAUSE_SECONDS
    while True:
        with other_connection() as other:
            rows = other.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                " AND wait_event = 'PgSleep'",
                [current_database_name()],
            ).fetchone()
        if rows and rows[0]:
            return
        assert still_running(), "the write ended without pausing"
        assert time.monotonic() < deadline, "the write never reached the paused row"
        time.sleep(0.02)


@pytest.mark.usefixtures("paused_write")
@pytest.mark.parametrize(
    ("action", "backup"),
    [("delete", False), ("delete", True), ("deactivate", False), ("deactivate", True)],
)
def test_the_command_keeps_a_row_whose_issue_appeared_while_its_write_ran(
    action: str, backup: bool, tmp_path: Path
) -> None:
    world = build_world(orphans=6)
    target = RegressionGroup.objects.get(id=world.eligible[2])
    _install_pause(target.id)
    args = ["--action", action, "--batch-size", "100", "--format", "json"]
    if backup:
        args += ["--backup", str(tmp_path / "backup.jsonl")]

    command = CommandProcess(*args, application_name="commit_window_test")
    _wait_until_paused(lambda: command.process.poll() is None)
    give_live_issue(target)
    code = command.wait(timeout=60)

    assert code == 0, command.stderr
    row = RegressionGroup.objects.filter(id=target.id).first()
    assert row is not None, "the row whose issue appeared while the write ran was deleted"
    assert row.active, "the row whose issue appeared while the write ran was deactivated"
    others = set(world.eligible) - {target.id}
    if action == "delete":
        assert not RegressionGroup.objects.filter(id__in=others).exists()
    else:
        assert not RegressionGroup.objects.filter(id__in=others, active=True).exists()
    if backup:
        assert others <= backup_ids(tmp_path / "backup.jsonl")
    summary = json.loads(command.stdout)
    assert summary["acted"] == len(others)
    assert summary["changed_meanwhile"] == 1
    record_figures(
        f"commit_window_{action}{'_backup' if backup else ''}", rows_lost=0 if row.active else 1
    )


@pytest.mark.usefixtures("paused_write")
@pytest.mark.parametrize("action", [CleanupAction.DELETE, CleanupAction.DEACTIVATE])
def test_the_admin_selection_keeps_a_row_whose_issue_appeared_while_its_write_ran(
    action: CleanupAction,
) -> None:
    world = build_world(orphans=3)
    target = RegressionGroup.objects.get(id=world.eligible[1])
    _install_pause(target.id)
    outcome: list[object] = []

    def work() -> None:
        try:
            outcome.append(cleanup_selected_orphans(action=action, ids=tuple(world.eligible)))
        finally:
            connections.close_all()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    _wait_until_paused(thread.is_alive)
    give_live_issue(target)
    thread.join(timeout=60)
    assert not thread.is_alive()

    assert RegressionGroup.objects.get(id=target.id).active
    [cleanup] = outcome
    assert cleanup.counts["acted"] == 2  # type: ignore[attr-defined]
    assert cleanup.counts["changed_meanwhile"] == 1  # type: ignore[attr-defined]
