"""Runs side by side, and runs against other transactions' row locks, as real processes.

One run at a time (session advisory lock), a second run says so and touches nothing;
shards split the table without overlap; a batch whose rows stay locked is retried, then skipped,
and never waits longer than its ``lock_timeout``.
"""

from __future__ import annotations

import os
import re
import time

import pytest

from regression_tracking.cleanup import batches as batches_module
from regression_tracking.models import RegressionGroup
from tests.reliability import (
    CommandProcess,
    backup_ids,
    build_world,
    record_figures,
    regression_rows,
    remaining_ids,
)
from tests.utils import other_connection

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]

# Pairs of runs started together.
CONCURRENT_ROUNDS = 3
CONCURRENT_ORPHANS = 400
# Slow enough that the first run still holds the lock when the second one asks for it.
SLOW_RUN = ["--batch-size", "20", "--batch-time", "0", "--sleep", "0.05", "-v", "2"]
# A refused run must be told at once, not after waiting for the other one.
REFUSED_WITHIN_SECONDS = 10.0

LOCK_BATCH_SIZE = 20
LOCKED_BATCH = 3


def _lock_timeout_seconds() -> float:
    value = batches_module.LOCK_TIMEOUT
    assert re.fullmatch(r"\d+s", value), value
    return float(value[:-1])


# The longest a batch can take whose rows stay locked: every attempt waits out the lock timeout.
LOCKED_BATCH_MAX_SECONDS = (
    batches_module.LOCK_ATTEMPTS * _lock_timeout_seconds()
    + (batches_module.LOCK_ATTEMPTS - 1) * batches_module.LOCK_RETRY_PAUSE_SECONDS
)


def test_two_runs_started_together_one_works_the_other_exits_3_at_once(tmp_path) -> None:
    refused = 0
    for round_number in range(CONCURRENT_ROUNDS):
        world = build_world(orphans=CONCURRENT_ORPHANS, linked=20, recent=20, projects=2)
        before = regression_rows()
        scope = [arg for p in world.projects for arg in ("--project", str(p.id))]
        runs = [
            CommandProcess(
                *SLOW_RUN,
                *scope,
                "--backup",
                str(tmp_path / f"{round_number}-{n}.jsonl"),
                application_name=f"rt_pair_{os.getpid()}_{n}",
            )
            for n in range(2)
        ]
        codes = [run.wait(timeout=60) for run in runs]
        assert sorted(codes) == [0, 3], [run.stderr for run in runs]
        winner, loser = (runs[0], runs[1]) if codes[0] == 0 else (runs[1], runs[0])
        assert "another cleanup_orphaned_regressions run is in progress" in loser.stderr
        assert "nothing was changed" in loser.stderr
        assert loser.stdout == ""
        assert loser.elapsed < min(winner.elapsed, REFUSED_WITHIN_SECONDS)
        assert backup_ids(tmp_path / f"{round_number}-{runs.index(loser)}.jsonl") == set()
        assert backup_ids(tmp_path / f"{round_number}-{runs.index(winner)}.jsonl") == set(
            world.eligible
        )
        assert set(before) - remaining_ids() == set(world.eligible)
        refused += 1
    record_figures("concurrent_runs", pairs_started_together=CONCURRENT_ROUNDS, refused=refused)


def test_two_shards_side_by_side_touch_only_their_own_rows(tmp_path) -> None:
    world = build_world(orphans=2 * CONCURRENT_ORPHANS, linked=40, recent=40, projects=4)
    project_of = dict(RegressionGroup.objects.values_list("id", "project_id"))
    runs = [
        CommandProcess(
            *SLOW_RUN,
            "--shard",
            f"{index}/2",
            "--backup",
            str(tmp_path / f"shard-{index}.jsonl"),
            application_name=f"rt_shard_{os.getpid()}_{index}",
        )
        for index in range(2)
    ]
    assert [run.wait(timeout=60) for run in runs] == [0, 0], [run.stderr for run in runs]
    # They ran at the same time.
    assert max(run.started for run in runs) < min(run.started + run.elapsed for run in runs)
    deleted = [backup_ids(tmp_path / f"shard-{index}.jsonl") for index in range(2)]
    for index, ids in enumerate(deleted):
        assert ids
        assert {project_of[i] % 2 for i in ids} == {index}
    assert not deleted[0] & deleted[1]
    assert deleted[0] | deleted[1] == set(world.eligible)
    assert remaining_ids() == set(world.linked) | set(world.recent)
    record_figures("shards", shards_side_by_side=2, rows_each=[len(ids) for ids in deleted])


def _batch_line_times(run: CommandProcess, timeout: float) -> dict[int, tuple[float, str]]:
    """When each ``batch N:`` line arrived, and the line."""
    times = {}
    for line in run.lines(timeout=timeout):
        if match := re.match(r"batch (\d+):", line):
            times[int(match[1])] = (time.monotonic(), line)
    return times


def test_rows_locked_past_the_lock_timeout_retry_and_the_run_finishes() -> None:
    world = build_world(orphans=5 * LOCK_BATCH_SIZE, projects=1)
    locked = world.eligible[(LOCKED_BATCH - 1) * LOCK_BATCH_SIZE : LOCKED_BATCH * LOCK_BATCH_SIZE]
    with other_connection() as other:
        other.execute("BEGIN")
        other.execute(
            "SELECT id FROM sentry_regressiongroup WHERE id = ANY(%s) FOR UPDATE", [locked]
        )
        run = CommandProcess(
            "--action",
            "deactivate",
            "--batch-size",
            str(LOCK_BATCH_SIZE),
            "--batch-time",
            "0",
            "-v",
            "2",
            application_name=f"rt_locked_{os.getpid()}",
        )
        times: dict[int, tuple[float, str]] = {}
        for line in run.lines(timeout=30):
            if line.startswith(f"batch {LOCKED_BATCH - 1}:"):
                times[LOCKED_BATCH - 1] = (time.monotonic(), line)
                break
        # Held past one lock timeout, then let go: the second attempt gets the rows.
        time.sleep(_lock_timeout_seconds() + 0.3)
        other.execute("COMMIT")
        times.update(_batch_line_times(run, timeout=30))
    assert run.wait() == 0, run.stderr
    waited = times[LOCKED_BATCH][0] - times[LOCKED_BATCH - 1][0]
    assert _lock_timeout_seconds() <= waited <= 2 * _lock_timeout_seconds() + 2
    assert times[LOCKED_BATCH][1].endswith(f"({LOCK_BATCH_SIZE} candidates), 20 deactivated\n")
    assert "regression_tracking.cleanup.batch_locked" in run.stderr
    assert "attempt=1" in run.stderr
    assert "attempt=2" not in run.stderr
    assert not RegressionGroup.objects.filter(id__in=world.eligible, active=True).exists()
    record_figures("lock_contention_retry", lock_waits_survived=1, seconds_waited=round(waited, 2))


def test_rows_locked_throughout_skip_their_batch_and_the_run_finishes_the_rest(tmp_path) -> None:
    world = build_world(orphans=5 * LOCK_BATCH_SIZE, projects=1)
    before = regression_rows()
    locked = world.eligible[(LOCKED_BATCH - 1) * LOCK_BATCH_SIZE : LOCKED_BATCH * LOCK_BATCH_SIZE]
    backup = tmp_path / "backup.jsonl"
    args = ["--batch-size", str(LOCK_BATCH_SIZE), "--batch-time", "0", "-v", "2"]
    args += ["--backup", str(backup)]
    with other_connection() as other:
        other.execute("BEGIN")
        other.execute(
            "SELECT id FROM sentry_regressiongroup WHERE id = ANY(%s) FOR UPDATE", [locked]
        )
        started = time.monotonic()
        run = CommandProcess(*args, application_name=f"rt_skip_{os.getpid()}")
        times = _batch_line_times(run, timeout=60)
        assert run.wait() == 0, run.stderr
        elapsed = time.monotonic() - started
        other.execute("ROLLBACK")
    waited = times[LOCKED_BATCH][0] - times[LOCKED_BATCH - 1][0]
    assert waited <= LOCKED_BATCH_MAX_SECONDS + 2
    assert times[LOCKED_BATCH][1] == (
        f"batch {LOCKED_BATCH}: ids {locked[0]}..{locked[-1]} ({LOCK_BATCH_SIZE} candidates), "
        "skipped: rows locked by another transaction, or issues kept appearing\n"
    )
    assert (
        f"skipped: {LOCK_BATCH_SIZE} (rows locked by another transaction, or issues kept "
        "appearing while their batch wrote)\n"
    ) in run.stdout
    assert "stop reason: done" in run.stdout
    for attempt in range(1, batches_module.LOCK_ATTEMPTS + 1):
        assert f"attempt={attempt}" in run.stderr
    # The rest is done, the locked rows untouched, and only what was deleted is in the backup.
    assert remaining_ids() == set(locked)
    assert backup_ids(backup) == set(world.eligible) - set(locked)

    rerun = CommandProcess(*args, application_name=f"rt_skip_{os.getpid()}")
    assert rerun.wait() == 0, rerun.stderr
    assert "deleted: 20\n" in rerun.stdout
    assert remaining_ids() == set()
    assert backup_ids(backup) == set(before)
    record_figures(
        "lock_contention_skip",
        locked_batches_skipped=1,
        attempts=batches_module.LOCK_ATTEMPTS,
        seconds_on_the_locked_batch=round(waited, 2),
        run_seconds=round(elapsed, 2),
    )
