"""--max-replication-lag: the run waits for standbys that fall behind, against a real standby.

The standby streams from a primary of its own (``tests/standby.py``), started from the binaries of
the PostgreSQL the suite runs on; its replay is paused with ``pg_wal_replay_pause()`` so its lag
grows while the cleanup writes, then resumed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from pathlib import Path

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from regression_tracking.models import RegressionGroup
from regression_tracking.services import (
    CleanupRequest,
    StandbyLagUnreadable,
    StopReason,
    run_cleanup,
)
from tests.factories import OrphanWorld
from tests.reliability import CommandProcess
from tests.standby import StreamingPair, streaming_pair
from tests.utils import ROOT, manage_command, manage_env

# The demo data holds this many orphans old enough to delete.
DEMO_ELIGIBLE = 5
# One row per batch with a pause between them, so the standby falls behind between two batches.
SLOW_BATCHES = ("--batch-size", "1", "--batch-time", "0", "--sleep", "1")
LIMIT = "1s"


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``manage.py`` with ``args`` in a subprocess with ``env``: its exit code and output."""
    return subprocess.run(
        manage_command(*args), env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def pair() -> Iterator[StreamingPair]:
    # The binaries of the server the suite runs on (DATABASE_URL), asked without Django's test
    # database, which a module's fixture cannot use.
    with psycopg.connect(os.environ["DATABASE_URL"]) as server:
        version = server.info.server_version
    with streaming_pair(version) as started:
        env = manage_env(DATABASE_URL=started.primary_url)
        done = _manage(env, "migrate", "--no-input", "-v", "0")
        assert done.returncode == 0, done.stderr
        yield started


def _load_demo(pair: StreamingPair) -> None:
    """Fresh demo data on the primary, replayed by the standby before the test pauses it."""
    done = _manage(manage_env(DATABASE_URL=pair.primary_url), "load_demo_data", "--replace")
    assert done.returncode == 0, done.stderr
    pair.wait_until_caught_up()


def _regression_groups(pair: StreamingPair) -> int:
    with pair.primary() as primary:
        row = primary.execute("SELECT count(*) FROM sentry_regressiongroup").fetchone()
    assert row is not None
    return int(row[0])


def _command(pair: StreamingPair, *args: str) -> CommandProcess:
    return CommandProcess(*args, application_name="regression-lag-test", url=pair.primary_url)


def _wait_for_line(command: CommandProcess, prefix: str, timeout: float = 30) -> str:
    for line in command.lines(timeout=timeout):
        if line.startswith(prefix):
            return line.rstrip("\n")
    raise AssertionError(f"no line starting {prefix!r} in:\n{command.stdout}{command.stderr}")


@pytest.mark.postgresql
def test_the_run_waits_for_a_paused_standby_then_goes_on(pair: StreamingPair) -> None:
    _load_demo(pair)
    before = _regression_groups(pair)
    pair.pause_replay()
    command = _command(pair, "--max-replication-lag", LIMIT, *SLOW_BATCHES, "-v", "2")
    try:
        waiting = _wait_for_line(command, "waiting for standbys:")
        assert "walreceiver (127.0.0.1)" in waiting
        assert f"(over --max-replication-lag {LIMIT})" in waiting
        deleted = before - _regression_groups(pair)
        assert 1 <= deleted < DEMO_ELIGIBLE
        # While the standby stays paused, no batch runs.
        time.sleep(2.5)
        assert command.process.poll() is None
        assert before - _regression_groups(pair) == deleted
        pair.resume_replay()
        _wait_for_line(command, f"standbys within --max-replication-lag {LIMIT} after a")
        assert command.wait() == 0, command.stderr
    finally:
        if command.process.poll() is None:
            command.kill()
        pair.resume_replay()
    output = command.stdout
    assert before - _regression_groups(pair) == DEMO_ELIGIBLE
    assert f"deleted: {DEMO_ELIGIBLE}" in output
    assert "stop reason: done" in output
    [standbys] = [line for line in output.splitlines() if line.startswith("standbys: ")]
    waited = re.fullmatch(
        rf"standbys: 1 seen; waited (\d+) times?, [0-9.]+s in all"
        rf" \(--max-replication-lag {LIMIT}\)",
        standbys,
    )
    assert waited is not None, standbys
    assert int(waited[1]) >= 1
    assert int(waited[1]) == output.count("waiting for standbys:")


@pytest.mark.postgresql
def test_a_wait_that_outlasts_max_runtime_ends_the_run(pair: StreamingPair, tmp_path: Path) -> None:
    textfile = tmp_path / "cleanup.prom"
    _load_demo(pair)
    before = _regression_groups(pair)
    pair.pause_replay()
    command = _command(
        pair,
        "--max-replication-lag",
        LIMIT,
        "--max-runtime",
        "6s",
        *SLOW_BATCHES,
        "--format",
        "json",
        "--metrics-textfile",
        str(textfile),
    )
    try:
        assert command.wait(timeout=30) == 0, command.stderr
    finally:
        if command.process.poll() is None:
            command.kill()
        pair.resume_replay()
    summary = json.loads(command.stdout_lines[-1])
    assert summary["stop_reason"] == str(StopReason.REPLICATION_LAG) == "replication_lag"
    assert summary["standbys"] == 1
    assert summary["replication_lag_waits"] >= 1
    assert 0 < summary["replication_lag_wait_seconds"] <= summary["elapsed_seconds"]
    assert 1 <= summary["acted"] < DEMO_ELIGIBLE
    assert summary["acted"] + summary["not_reached"] == summary["eligible"] == DEMO_ELIGIBLE
    assert before - _regression_groups(pair) == summary["acted"]
    counters = dict(
        line.rsplit(" ", 1) for line in textfile.read_text().splitlines() if line[:1] != "#"
    )
    waits = summary["replication_lag_waits"]
    waited_ms = float(counters["regression_tracking_cleanup_replication_lag_waited_ms_total"])
    assert float(counters["regression_tracking_cleanup_replication_lag_waits_total"]) == waits
    # Each wait is counted in whole milliseconds.
    assert waited_ms == pytest.approx(summary["replication_lag_wait_seconds"] * 1000, abs=waits)


@pytest.mark.postgresql
def test_a_standby_that_disconnects_while_behind_is_no_longer_waited_for(
    pair: StreamingPair,
) -> None:
    _load_demo(pair)
    before = _regression_groups(pair)
    pair.pause_replay()
    command = _command(pair, "--max-replication-lag", LIMIT, *SLOW_BATCHES, "-v", "2")
    try:
        _wait_for_line(command, "waiting for standbys:")
        with pair.primary() as primary:
            primary.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_replication")
        gone = _wait_for_line(command, "standby ")
        assert gone == (
            "standby walreceiver (127.0.0.1) disconnected while behind: no longer waited for"
        )
        assert command.wait() == 0, command.stderr
    finally:
        if command.process.poll() is None:
            command.kill()
        pair.resume_replay()
    assert before - _regression_groups(pair) == DEMO_ELIGIBLE
    assert "stop reason: done" in command.stdout


@pytest.mark.postgresql
def test_pointed_at_a_standby_the_option_is_refused_in_one_line(pair: StreamingPair) -> None:
    refused = _manage(
        manage_env(DATABASE_URL=pair.standby_url),
        "cleanup_orphaned_regressions",
        "--max-replication-lag",
        "5s",
        "--dry-run",
    )
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.splitlines() == [
        "CommandError: --max-replication-lag: this server is a standby (in recovery): the "
        "standbys' lag is read on the primary, so point the cleanup at the primary; nothing was "
        "changed"
    ]


@pytest.mark.postgresql
def test_a_caught_up_standby_costs_no_wait(pair: StreamingPair) -> None:
    _load_demo(pair)
    command = _command(
        pair,
        "--max-replication-lag",
        "30s",
        "--batch-size",
        "1",
        "--batch-time",
        "0",
        "--format",
        "json",
    )
    assert command.wait() == 0, command.stderr
    summary = json.loads(command.stdout_lines[-1])
    assert summary["standbys"] == 1
    assert summary["replication_lag_waits"] == 0
    assert summary["acted"] == DEMO_ELIGIBLE
    assert summary["stop_reason"] == "done"


@pytest.mark.postgresql
def test_without_a_standby_the_summary_says_so(world: OrphanWorld) -> None:
    out = StringIO()
    call_command("cleanup_orphaned_regressions", "--max-replication-lag", "5s", stdout=out)
    assert (
        "standbys: none streaming from this server "
        "(--max-replication-lag 5s had nothing to wait for)"
    ) in out.getvalue().splitlines()
    assert not RegressionGroup.objects.filter(id=world.old_active.id).exists()


@pytest.mark.postgresql
def test_a_role_that_cannot_read_the_lag_is_refused_before_any_write(world: OrphanWorld) -> None:
    rows = RegressionGroup.objects.count()
    with connection.cursor() as cursor:
        # Rolled back with the test's transaction, role included.
        cursor.execute("CREATE ROLE regression_tracking_no_monitor NOLOGIN")
        cursor.execute("SET ROLE regression_tracking_no_monitor")
    try:
        with pytest.raises(StandbyLagUnreadable, match="GRANT pg_monitor TO"):
            run_cleanup(CleanupRequest(max_replication_lag=timedelta(seconds=5)))
        with pytest.raises(CommandError) as refused:
            call_command("cleanup_orphaned_regressions", "--max-replication-lag", "5s")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
    message = str(refused.value)
    assert message == (
        "--max-replication-lag: role 'regression_tracking_no_monitor' cannot read the standbys' "
        "replay lag: pg_stat_replication shows it only to superusers and members of "
        "pg_read_all_stats (with INHERIT); GRANT pg_monitor TO regression_tracking_no_monitor; "
        "nothing was changed"
    )
    assert "\n" not in message
    assert RegressionGroup.objects.count() == rows


def test_sqlite_refuses_the_option_in_one_line(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REGRESSION_TRACKING_LOG_LEVEL": "WARNING",
    }
    for args in (("migrate", "--no-input", "-v", "0"), ("load_demo_data",)):
        done = _manage(env, *args)
        assert done.returncode == 0, done.stderr
    before = (tmp_path / "db.sqlite3").read_bytes()
    refused = _manage(env, "cleanup_orphaned_regressions", "--max-replication-lag", "5s")
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert refused.stderr.splitlines() == [
        "CommandError: argument --max-replication-lag: needs PostgreSQL (its standbys' replay "
        "lag); database 'default' is SQLite"
    ]
    assert (tmp_path / "db.sqlite3").read_bytes() == before
