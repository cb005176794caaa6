"""Faults mid-run: ``kill -9`` at random points, the database connection terminated, a full disk.

A crash loses at most the uncommitted batch, rerunning finishes the job, and every row
deleted is in the backup before its batch commits, so nothing is lost.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from regression_tracking.models import RegressionGroup
from regression_tracking.services import (
    BackupWriter,
    read_backup,
    restore_regression_groups,
)
from tests.reliability import (
    COMMAND,
    CommandProcess,
    backup_ids,
    build_world,
    database_checksum,
    record_figures,
    regression_rows,
    remaining_ids,
    terminate_backends_of,
    wait_for_no_backends,
)

# Kill -9 loop: runs killed at random points, each followed by a rerun (the next run).
CRASH_KILLS = 24
CRASH_ORPHANS = 5000
CRASH_BATCH_SIZE = 25
CRASH_SLEEP = "0.02"
# Hard stop for the whole loop, whatever happens.
CRASH_MAX_SECONDS = 150
# Every third kill after a random delay (startup, selection, anywhere); the others a few
# milliseconds after a random batch line, so they land inside a batch's transaction or its backup.
CRASH_TIMER_KILL_SECONDS = (0.2, 0.8)
CRASH_BATCHES_BEFORE_KILL = (1, 4)
CRASH_SEED = 20261128

# pg_terminate_backend on the command's own connection.
TERMINATIONS = 3
TERMINATE_ORPHANS = 300
TERMINATE_BATCH_SIZE = 20


def _restore_from(path: Path) -> int:
    with path.open(encoding="utf-8") as backup:
        return restore_regression_groups(read_backup(backup)).restored


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_kill_9_at_random_points_then_rerun_equals_one_clean_run(tmp_path) -> None:
    world = build_world(orphans=CRASH_ORPHANS, linked=300, recent=200, discarded=300, projects=6)
    initial = regression_rows()
    eligible = world.eligible
    application_name = f"rt_crash_{os.getpid()}"
    # Fixed sizes: the batches of every crashed run line up with the clean run's.
    args = ["--batch-size", str(CRASH_BATCH_SIZE), "--batch-time", "0", "-v", "2"]

    # One clean run gives the state every crashed-and-rerun sequence must end in.
    clean_backup = tmp_path / "clean.jsonl"
    clean = CommandProcess(*args, "--backup", str(clean_backup), application_name=application_name)
    assert clean.wait() == 0, clean.stderr
    clean_state = regression_rows()
    assert set(clean_state) == set(initial) - set(eligible)
    # ... and its backup gives back the initial state.
    assert _restore_from(clean_backup) == len(eligible)
    assert regression_rows() == initial

    rng = random.Random(CRASH_SEED)
    backup = tmp_path / "crash.jsonl"
    deadline = time.monotonic() + CRASH_MAX_SECONDS
    kills = mid_batch_kills = torn_tails = 0
    gone: set[int] = set()
    while kills < CRASH_KILLS:
        assert time.monotonic() < deadline, f"only {kills} kills in {CRASH_MAX_SECONDS}s"
        run = CommandProcess(
            *args,
            "--sleep",
            CRASH_SLEEP,
            "--backup",
            str(backup),
            application_name=application_name,
        )
        if kills % 3 == 0:
            for _line in run.lines(timeout=rng.uniform(*CRASH_TIMER_KILL_SECONDS)):
                pass
        else:
            wanted = rng.randint(*CRASH_BATCHES_BEFORE_KILL)
            batches = 0
            for line in run.lines(timeout=30):
                batches += line.startswith("batch ")
                if batches == wanted:
                    time.sleep(rng.uniform(0, 0.04))
                    mid_batch_kills += 1
                    break
        run.kill()
        assert run.wait() == -signal.SIGKILL, "the run finished before it was killed"
        kills += 1
        # The server drops the killed session (and its advisory lock) before the rerun.
        wait_for_no_backends(application_name)

        now_gone = set(initial) - remaining_ids()
        newly_gone = now_gone - gone
        # Batches are all or nothing, taken in id order: what is gone is whole batches, a
        # prefix of the eligible rows.
        assert len(newly_gone) % CRASH_BATCH_SIZE == 0
        assert now_gone == set(eligible[: len(now_gone)])
        assert len(now_gone) < len(eligible), "raise CRASH_ORPHANS: the job finished while killing"
        # Every deleted row reached the backup before its batch committed.
        assert now_gone <= backup_ids(backup)
        torn_tails += not backup.read_bytes().endswith(b"\n") if backup.exists() else 0
        gone = now_gone

    final = CommandProcess(*args, "--backup", str(backup), application_name=application_name)
    assert final.wait() == 0, final.stderr
    assert "stop reason: done" in final.stdout
    assert regression_rows() == clean_state
    # The backup file, appended to by 25 runs of which 24 were killed, restores every row.
    with backup.open(encoding="utf-8") as lines:
        saved = read_backup(lines)
    assert {row.id for row in saved} >= set(eligible)
    assert _restore_from(backup) == len(eligible)
    assert regression_rows() == initial
    record_figures(
        "crash",
        kill_9=kills,
        kills_a_few_ms_after_a_batch=mid_batch_kills,
        reruns=kills,
        rows_deleted_before_the_final_run=len(gone),
        orphans=len(eligible),
        torn_backup_lines_seen=torn_tails,
        rows_lost=len(initial) - len(regression_rows()),
    )


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_connection_terminated_mid_run_exits_1_and_a_rerun_completes(tmp_path) -> None:
    world = build_world(orphans=TERMINATE_ORPHANS, linked=50, recent=20, projects=3)
    initial = regression_rows()
    backup = tmp_path / "backup.jsonl"
    application_name = f"rt_terminate_{os.getpid()}"
    args = ["--batch-size", str(TERMINATE_BATCH_SIZE), "--sleep", "0.02", "-v", "3"]
    args += ["--backup", str(backup)]
    rng = random.Random(CRASH_SEED)
    gone: set[int] = set()
    for attempt in range(TERMINATIONS):
        run = CommandProcess(*args, application_name=application_name)
        if attempt == 0:
            # As soon as it has connected: before or during the selection.
            for _ in range(500):
                if terminate_backends_of(application_name):
                    break
                time.sleep(0.005)
            else:
                pytest.fail("the command never connected")
        else:
            wanted = rng.randint(1, 3)
            batches = 0
            for line in run.lines(timeout=30):
                batches += line.startswith("batch ")
                if batches == wanted:
                    assert terminate_backends_of(application_name) == 1
                    break
        assert run.wait(timeout=60) == 1, run.stderr
        assert "CommandError: database error:" in run.stderr
        # The hint only once batches ran: the first run is cut before or during the selection.
        hint = "finished batches stay done; rerun to finish the job" in run.stderr
        assert hint == (attempt > 0), run.stderr
        assert "Traceback" not in run.stderr
        reported = {
            int(line.rsplit(" ", 1)[1])
            for line in run.stdout_lines
            if line.startswith("  deleted regression group ")
        }
        now_gone = set(initial) - remaining_ids()
        # Finished batches stay done; the batch in flight is rolled back.
        assert reported <= now_gone - gone
        assert len(now_gone - gone - reported) <= TERMINATE_BATCH_SIZE
        assert now_gone <= set(world.eligible)
        assert now_gone <= backup_ids(backup)
        gone = now_gone
        wait_for_no_backends(application_name)

    rerun = CommandProcess(*args, application_name=application_name)
    assert rerun.wait() == 0, rerun.stderr
    assert set(regression_rows()) == set(initial) - set(world.eligible)
    assert _restore_from(backup) == len(world.eligible)
    assert regression_rows() == initial
    record_figures(
        "database_gone",
        connections_terminated=TERMINATIONS,
        rows_done_before_the_rerun=len(gone),
        rows_lost=len(initial) - len(regression_rows()),
    )


@pytest.mark.django_db
def test_rerun_after_a_kill_mid_backup_write_keeps_the_backup_restorable(tmp_path) -> None:
    """A kill inside ``BackupWriter.write`` leaves a cut line; the rerun must not append to it."""
    world = build_world(orphans=6, linked=2, projects=2)
    initial = regression_rows()
    backup = tmp_path / "backup.jsonl"
    # The killed run: its first batch written and committed, the second cut mid-line (so never
    # committed: a batch commits only after its rows are on disk).
    first_batch = RegressionGroup.objects.filter(id__in=world.eligible[:3]).order_by("id")
    with BackupWriter(backup) as writer:
        writer.write(first_batch)
    RegressionGroup.objects.filter(id__in=world.eligible[:3]).delete()
    second = RegressionGroup.objects.filter(id__in=world.eligible[3:]).order_by("id")
    with BackupWriter(backup) as writer:
        writer.write(second)
    text = backup.read_text(encoding="utf-8")
    backup.write_text(text[: len(text) - 40], encoding="utf-8")

    call_command(COMMAND, "--backup", str(backup), stdout=StringIO())

    with backup.open(encoding="utf-8") as lines:
        saved = read_backup(lines)
    assert {row.id for row in saved} == set(world.eligible)
    assert restore_regression_groups(saved).restored == len(world.eligible)
    assert regression_rows() == initial


@pytest.mark.django_db
def test_backup_that_is_not_a_backup_is_refused_not_repaired(tmp_path) -> None:
    build_world(orphans=2, projects=1)
    before = database_checksum()
    backup = tmp_path / "notes.txt"
    backup.write_text("my notes\nno newline at the end", encoding="utf-8")
    with pytest.raises(CommandError, match=r"--backup: .*notes.txt.*line 2"):
        call_command(COMMAND, "--backup", str(backup), stdout=StringIO())
    assert backup.read_text(encoding="utf-8") == "my notes\nno newline at the end"
    assert database_checksum() == before


@pytest.mark.django_db
def test_full_disk_while_writing_the_backup_names_the_option_and_commits_nothing(
    tmp_path, monkeypatch
) -> None:
    world = build_world(orphans=5, projects=1)
    before = database_checksum()
    real_write = BackupWriter.write
    writes: list[int] = []

    class FullDisk(StringIO):
        """Like a buffered file on a full disk: flushing fails, and so does closing."""

        def flush(self) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def close(self) -> None:
            try:
                self.flush()
            finally:
                super().close()

    def write_then_disk_full(self: BackupWriter, regressions) -> None:
        writes.append(1)
        if len(writes) == 2:
            self._file = FullDisk()
        real_write(self, regressions)

    monkeypatch.setattr(BackupWriter, "write", write_then_disk_full)
    backup = tmp_path / "backup.jsonl"
    with pytest.raises(CommandError) as error:
        call_command(COMMAND, "--backup", str(backup), "--batch-size", "2", stdout=StringIO())
    assert str(error.value) == (
        f"--backup: cannot write to {backup}: No space left on device; the batch being written"
        " was not committed (finished batches stay done; rerun to finish the job)"
    )
    # The first batch is done and in the backup, the second rolled back, the third never started.
    assert remaining_ids() == set(world.eligible[2:])
    assert backup_ids(backup) == set(world.eligible[:2])
    assert database_checksum() != before
