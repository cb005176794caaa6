"""Restore under a hostile database: a queued table lock, signals while it waits, a large file.

Every statement is bounded, signals end a run even while a statement waits, and a
restore is all or nothing. Two failures it guards against: a restore without a lock timeout, and one
holding every row in memory (a million-row backup did not fit the Kubernetes example's 512Mi).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from regression_tracking.cleanup import backup as backup_module
from regression_tracking.models import RegressionGroup
from tests.factories import ProjectFactory
from tests.reliability import record_figures
from tests.utils import (
    ROOT,
    database_url,
    manage_command,
    manage_env,
    other_connection,
    run_manage,
)

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]

RESTORE = "restore_regression_groups"
# Rows in the large backup, and in the small one that gives the process's baseline.
LARGE_ROWS = 100_000
BASELINE_ROWS = 1_000
# Peak RSS the large restore may take above the small one's. Holding the rows took ~1.2 KB each
# (120 MB here); streaming keeps an 8-byte id per row (and a sorted copy for a moment) and one
# chunk of rows.
MAX_EXTRA_RSS_MB = 30
# A restore blocked on a lock must end this soon after SIGINT/SIGTERM.
INTERRUPTED_WITHIN_SECONDS = 5.0


def _seconds(value: str) -> float:
    assert value.endswith("s"), value
    return float(value[:-1])


def _write_backup(path: Path, project_ids: list[int], ids: range) -> None:
    stamp = datetime(2026, 11, 1, tzinfo=UTC).isoformat()
    with path.open("w", encoding="utf-8") as file:
        for row_id in ids:
            row = {
                "id": row_id,
                "date_added": stamp,
                "date_updated": stamp,
                "date_regressed": stamp,
                "date_resolved": None,
                "version": 1,
                "active": True,
                "project_id": project_ids[row_id % len(project_ids)],
                "type": 1,
                "fingerprint": f"{row_id:x}",
                "baseline": 100.0,
                "regressed": 250.0,
            }
            file.write(json.dumps(row) + "\n")


@pytest.fixture
def small_backup(tmp_path) -> tuple[Path, list[int]]:
    project_ids = [p.id for p in ProjectFactory.create_batch(2)]
    path = tmp_path / "backup.jsonl"
    _write_backup(path, project_ids, range(1, 51))
    return path, project_ids


def _hold_table_lock():
    """Another session holding ACCESS EXCLUSIVE on the table, as a queued ALTER TABLE would."""
    other = other_connection()
    other.execute("BEGIN")
    other.execute("LOCK TABLE sentry_regressiongroup IN ACCESS EXCLUSIVE MODE")
    return other


def test_a_table_lock_ends_the_restore_after_its_lock_timeout(small_backup) -> None:
    path, _projects = small_backup
    lock_timeout = _seconds(backup_module.RESTORE_LOCK_TIMEOUT)
    with _hold_table_lock() as other:
        started = time.monotonic()
        process = run_manage(RESTORE, str(path), timeout=60)
        elapsed = time.monotonic() - started
        other.execute("ROLLBACK")
    assert process.returncode == 1, process.stderr
    assert process.stderr == (
        f"CommandError: waited more than {backup_module.RESTORE_LOCK_TIMEOUT} (lock_timeout) for a"
        " lock on sentry_regressiongroup: another session holds it (an ALTER TABLE, a VACUUM"
        " FULL, a long transaction); nothing was restored\n"
    )
    assert lock_timeout <= elapsed < lock_timeout + 10
    assert not RegressionGroup.objects.exists()
    record_figures(
        "restore_lock_timeout", lock_timeout_s=lock_timeout, exited_after_s=round(elapsed, 2)
    )


def _waiting_on_a_lock(application_name: str) -> bool:
    with other_connection() as other:
        row = other.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
            " AND wait_event_type = 'Lock'",
            [application_name],
        ).fetchone()
    return bool(row and row[0])


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_a_statement_waits_rolls_back_and_exits(small_backup, signum) -> None:
    path, _projects = small_backup
    application_name = f"rt_restore_signal_{os.getpid()}_{signum}"
    env = manage_env(DATABASE_URL=database_url(application_name=application_name))
    with _hold_table_lock() as other:
        process = subprocess.Popen(
            manage_command(RESTORE, str(path)),
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while not _waiting_on_a_lock(application_name):
            assert time.monotonic() < deadline, "the restore never waited on the lock"
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        sent = time.monotonic()
        process.send_signal(signum)
        out, err = process.communicate(timeout=30)
        elapsed = time.monotonic() - sent
        # Still holding the lock: the restore was interrupted, not let through.
        other.execute("ROLLBACK")
    name = signal.Signals(signum).name
    assert process.returncode == 1, err
    assert err == f"CommandError: interrupted by {name}: rolled back, nothing was restored\n"
    assert out == ""
    assert elapsed < INTERRUPTED_WITHIN_SECONDS
    assert elapsed < _seconds(backup_module.RESTORE_LOCK_TIMEOUT)
    assert not RegressionGroup.objects.exists()
    record_figures(f"restore_{name}_while_waiting", exited_after_s=round(elapsed, 2), rows_lost=0)


# VmHWM, the peak RSS of this address space: getrusage's ru_maxrss survives exec, so it would report
# the forking test process's size.
_PEAK_RSS = """
import re
from django.core.management import call_command
call_command("restore_regression_groups", {path!r}, verbosity=0)
with open("/proc/self/status") as status:
    print(re.search(r"VmHWM:\\s+(\\d+) kB", status.read())[1])
"""


def _restore_peak_rss_kb(path: Path) -> int:
    """The peak RSS of a fresh process that restores ``path``, in KB."""
    process = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django\ndjango.setup()\n" + _PEAK_RSS.format(path=str(path)),
        ],
        cwd=ROOT,
        env={**manage_env(), "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    return int(process.stdout.strip().splitlines()[-1])


def test_a_large_backup_restores_in_bounded_memory(tmp_path) -> None:
    project_ids = [p.id for p in ProjectFactory.create_batch(10)]
    small, large = tmp_path / "small.jsonl", tmp_path / "large.jsonl"
    _write_backup(small, project_ids, range(1, BASELINE_ROWS + 1))
    first_large = 10 * BASELINE_ROWS
    _write_backup(large, project_ids, range(first_large, first_large + LARGE_ROWS))
    baseline_kb = _restore_peak_rss_kb(small)
    started = time.monotonic()
    large_kb = _restore_peak_rss_kb(large)
    elapsed = time.monotonic() - started
    assert RegressionGroup.objects.count() == BASELINE_ROWS + LARGE_ROWS
    extra_mb = (large_kb - baseline_kb) / 1024
    record_figures(
        "restore_memory",
        rows=LARGE_ROWS,
        file_mb=round(large.stat().st_size / 2**20, 1),
        baseline_peak_rss_mb=round(baseline_kb / 1024, 1),
        peak_rss_mb=round(large_kb / 1024, 1),
        above_baseline_mb=round(extra_mb, 1),
        seconds=round(elapsed, 1),
    )
    assert extra_mb < MAX_EXTRA_RSS_MB
