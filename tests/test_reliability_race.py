"""The race rule under load: issues created and deleted by other connections while the cleanup runs.

The statement that deletes or deactivates re-states the orphan predicate, so a GroupHash
committed before that statement runs always saves its row. Racer threads, each on its own
connection, keep giving random regressions a live issue and taking it away (deleted or discarded),
and log when each change began and when its commit returned. For every row the cleanup changed, the
log must show that it had no live group when its batch statement started.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from regression_tracking.cleanup import batches as batches_module
from regression_tracking.cleanup.backup import row_to_dict
from regression_tracking.fingerprints import hash_fingerprint
from regression_tracking.models import RegressionGroup
from regression_tracking.services import read_backup, restore_regression_groups
from tests.reliability import (
    COMMAND,
    backup_ids,
    build_world,
    record_figures,
    regression_rows,
)
from tests.utils import other_connection

# (action, with --backup): without a backup the batch's write statement alone re-checks the
# predicate; with one, the locking SELECT that feeds the backup re-checks it first.
RACE_ROUNDS = (("delete", False), ("deactivate", True), ("delete", True))
RACE_ORPHANS = 3000
RACE_LINKED = 600
RACE_DISCARDED = 300
RACE_INACTIVE = 300
RACE_PROJECTS = 5
RACE_BATCH_SIZE = 50
RACE_SLEEP = "0.01"
RACERS = 2
# Each racer stops by itself after this many changes or seconds, whichever comes first.
RACE_MAX_CHANGES = 20_000
RACE_MAX_SECONDS = 30.0
# Changes each racer makes before the cleanup starts, so the cleanup starts mid-race.
RACE_WARM_UP_CHANGES = 20
RACE_SEED = 6

INSERT_GROUP = (
    "INSERT INTO sentry_groupedmessage (project_id, logger, level, message, status, times_seen,"
    " last_seen, first_seen, type) VALUES (%s, '', 40, 'race', 0, 1, now(), now(), 1) RETURNING id"
)
KEY = "project_id = %s AND hash = %s"


@dataclass(frozen=True, slots=True)
class Change:
    # Whether the row has a live group once this change is committed.
    live: bool
    # Monotonic clock before the transaction began and after its COMMIT returned.
    began: float
    committed: float


@dataclass
class Racer:
    """Flips the issue of its own rows (no two racers share a row) until told or capped."""

    keys: dict[int, tuple[int, str]]
    # "live", "discarded" (GroupHash without group) or "missing" (no GroupHash), by row id.
    state: dict[int, str]
    seed: int
    stop: threading.Event
    changes: dict[int, list[Change]] = field(default_factory=lambda: defaultdict(list))
    count: int = 0
    error: BaseException | None = None

    def run(self) -> None:
        rng = random.Random(self.seed)
        ids = sorted(self.keys)
        deadline = time.monotonic() + RACE_MAX_SECONDS
        try:
            with other_connection() as conn:
                while (
                    not self.stop.is_set()
                    and self.count < RACE_MAX_CHANGES
                    and time.monotonic() < deadline
                ):
                    row_id = rng.choice(ids)
                    began = time.monotonic()
                    with conn.transaction():
                        new_state = self._flip(conn, row_id, rng)
                    self.changes[row_id].append(
                        Change(new_state == "live", began, time.monotonic())
                    )
                    self.state[row_id] = new_state
                    self.count += 1
        except BaseException as error:
            self.error = error

    def _flip(self, conn: Any, row_id: int, rng: random.Random) -> str:
        project_id, hash_ = self.keys[row_id]
        if self.state[row_id] == "live":
            (group_id,) = conn.execute(
                f"SELECT group_id FROM sentry_grouphash WHERE {KEY}", [project_id, hash_]
            ).fetchone()
            if rng.random() < 0.5:
                # The issue is deleted, and its hashes with it.
                conn.execute(f"DELETE FROM sentry_grouphash WHERE {KEY}", [project_id, hash_])
                new_state = "missing"
            else:
                # The issue is discarded: its hash stays, tombstoned, with no group.
                conn.execute(
                    "UPDATE sentry_grouphash SET group_id = NULL, group_tombstone_id = 1"
                    f" WHERE {KEY}",
                    [project_id, hash_],
                )
                new_state = "discarded"
            conn.execute("DELETE FROM sentry_groupedmessage WHERE id = %s", [group_id])
            return new_state
        (group_id,) = conn.execute(INSERT_GROUP, [project_id]).fetchone()
        if self.state[row_id] == "discarded":
            conn.execute(
                f"UPDATE sentry_grouphash SET group_id = %s, group_tombstone_id = NULL WHERE {KEY}",
                [group_id, project_id, hash_],
            )
        else:
            conn.execute(
                "INSERT INTO sentry_grouphash (project_id, hash, group_id) VALUES (%s, %s, %s)",
                [project_id, hash_, group_id],
            )
        return "live"


@dataclass(frozen=True, slots=True)
class Write:
    began: float
    finished: float
    ids: tuple[int, ...]


def _record_writes(monkeypatch: pytest.MonkeyPatch) -> list[Write]:
    """Time every batch's write (its statement, the check before its commit, and any redo) and
    keep the ids it changed and kept."""
    writes: list[Write] = []
    real_write = batches_module._write_checked

    def timed_write(*args, **kwargs):
        began = time.monotonic()
        ids = real_write(*args, **kwargs)
        writes.append(Write(began, time.monotonic(), tuple(ids)))
        return ids

    monkeypatch.setattr(batches_module, "_write_checked", timed_write)
    return writes


def _live_when_the_statement_began(changes: list[Change], initially_live: bool, write: Write):
    """True or False when the change log is certain, None when a change overlapped the write."""
    if any(c.began < write.finished and c.committed >= write.began for c in changes):
        return None
    before = [c for c in changes if c.committed < write.began]
    return before[-1].live if before else initially_live


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_no_row_with_a_live_group_is_changed_while_issues_come_and_go(
    tmp_path, monkeypatch
) -> None:
    totals: dict[str, int] = defaultdict(int)
    for round_number, (action, with_backup) in enumerate(RACE_ROUNDS):
        world = build_world(
            orphans=RACE_ORPHANS,
            linked=RACE_LINKED,
            discarded=RACE_DISCARDED,
            inactive=RACE_INACTIVE,
            projects=RACE_PROJECTS,
        )
        initial = regression_rows(world.all_ids)
        keys = {
            row_id: (project_id, hash_fingerprint([fingerprint])[0])
            for row_id, project_id, fingerprint in RegressionGroup.objects.filter(
                id__in=world.all_ids
            ).values_list("id", "project_id", "fingerprint")
        }
        initially_live = set(world.linked)
        state = {
            row_id: "live"
            if row_id in initially_live
            else "discarded"
            if row_id in world.discarded
            else "missing"
            for row_id in keys
        }
        stop = threading.Event()
        racers = [
            Racer(
                keys={k: v for i, (k, v) in enumerate(sorted(keys.items())) if i % RACERS == n},
                state=state,
                seed=RACE_SEED * 100 + round_number * RACERS + n,
                stop=stop,
            )
            for n in range(RACERS)
        ]
        threads = [threading.Thread(target=racer.run, daemon=True) for racer in racers]
        for thread in threads:
            thread.start()
        warm_up_deadline = time.monotonic() + 10
        while any(r.count < RACE_WARM_UP_CHANGES for r in racers):
            assert time.monotonic() < warm_up_deadline, [r.error for r in racers]
            time.sleep(0.005)
        writes = _record_writes(monkeypatch)
        backup = tmp_path / f"round-{round_number}.jsonl"
        projects = [arg for p in world.projects for arg in ("--project", str(p.id))]
        out = StringIO()
        try:
            call_command(
                COMMAND,
                "--min-age=0",
                f"--action={action}",
                f"--batch-size={RACE_BATCH_SIZE}",
                f"--sleep={RACE_SLEEP}",
                "--max-runtime=2m",
                "--format=json",
                *projects,
                *([f"--backup={backup}"] if with_backup else []),
                stdout=out,
            )
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
        monkeypatch.undo()
        assert not any(thread.is_alive() for thread in threads)
        assert [r.error for r in racers] == [None] * RACERS
        result = json.loads(out.getvalue())
        assert result["stop_reason"] == "done"

        changes: dict[int, list[Change]] = {}
        for racer in racers:
            changes.update(racer.changes)
        acted = [row_id for write in writes for row_id in write.ids]
        assert len(acted) == len(set(acted)) == result["acted"]
        violations, uncertain = [], 0
        for write in writes:
            for row_id in write.ids:
                live = _live_when_the_statement_began(
                    changes.get(row_id, []), row_id in initially_live, write
                )
                if live is None:
                    uncertain += 1
                elif live:
                    violations.append(row_id)
        assert violations == []

        if action == "deactivate":
            after = regression_rows(acted)
            assert all(after[i]["active"] is False and initial[i]["active"] for i in acted)
        if with_backup:
            # Every changed row is in the backup as it was before the run.
            assert set(acted) <= backup_ids(backup)
            with backup.open(encoding="utf-8") as lines:
                saved = read_backup(lines)
            assert all(row_to_dict(row) == initial[row.id] for row in saved)
            if action == "delete":
                assert restore_regression_groups(saved).restored == len(acted)
                assert regression_rows(world.all_ids) == initial
        # Rows never changed are exactly as they were.
        untouched = set(world.all_ids) - set(acted)
        assert regression_rows(untouched) == {i: initial[i] for i in untouched}

        totals["rounds"] += 1
        totals["issue_changes_by_racers"] += sum(r.count for r in racers)
        totals["rows_under_race"] += len(keys)
        totals["rows_changed_by_cleanup"] += len(acted)
        totals["candidates_saved_by_a_new_issue"] += result["eligible"] - result["acted"]
        totals["changes_overlapping_a_batch_statement"] += uncertain
        totals["batches"] += result["batches"]
        totals["violations"] += len(violations)
        if with_backup:
            totals["rows_lost"] += len(set(initial) - set(regression_rows(world.all_ids)))
    record_figures("race", **totals)
