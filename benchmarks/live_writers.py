"""A Sentry-like writer beside the cleanup: its latency, its lock waits, and any wrong delete.

    .venv/bin/python -m benchmarks.live_writers [--database-url URL] [--rows 1000000]
        [--seconds 10] [--json PATH] [--page PATH | --no-page]

On the default shape of ``benchmarks.dataset`` (N RegressionGroups over 1,000 projects, 10%
orphans, all past the grace period), WRITERS threads each hold their own connection and run a
paced mix of short transactions, one per operation, as Sentry's ingestion and issue workflow
would:

- ``insert``: a new Group, its GroupHash and a new RegressionGroup on that issue key;
- ``update``: an existing RegressionGroup's ``date_updated``/``regressed``, half of the time one
  of the old orphans the cleanup is about to delete (so its row locks meet the writer's);
- ``delete_group``: a live Group and its GroupHashes (GroupHash.group is ``on_delete=CASCADE``, so
  a deleted issue takes its hashes along), which orphans its RegressionGroup;
- ``link``: an old orphan's issue appears: a new Group and the GroupHash of the orphan's key
  pointing at it (the race the cleanup must survive).

Phases: the writer alone for ``--seconds``; then the writer beside ``cleanup_orphaned_regressions``
(a subprocess, default flags but ``--batch-time`` if given, so ``--action delete``), from the
command's start until it exits. An operation belongs to the phase it started in. When one
cleanup run is shorter than ``--seconds``, the rows it deleted are put back (from a copy of the
orphans taken after the build; the writer's operations during the copy count for no phase) and
the cleanup runs again, until the phase has ``--seconds`` of writer operations.

The writer's lock waits: a sampler on its own connection reads ``pg_stat_activity`` every
SAMPLE_SECONDS for the writer's backends (by ``application_name``) with ``wait_event_type =
'Lock'``; the longest ``clock_timestamp() - query_start`` seen is the phase's longest lock wait
(the waiting statement's age when sampled: its wait, plus the little it ran before it).

Wrong deletes: a deferred constraint trigger on ``sentry_regressiongroup`` (``DETECTOR_SQL``) runs
at the commit of each transaction that deleted a row and, with a fresh snapshot (a volatile
function's statement in READ COMMITTED), looks for a live issue of that row: a GroupHash with the
row's key and a group that exists. Each it finds goes to a side table, counted after the run.
Statement triggers note when each DELETE started and ended, and each wrong delete's link (the
writer's wall clock, the server's on this machine) is placed against its DELETE: before it (the
orphan rule missed a committed issue), or after its start (its snapshot could not see the link).
The triggers are dropped after the run. The database is emptied and refilled: by default
``bench_live``, which must be one of the benchmark's own.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

from benchmarks.page import DEFAULT_PAGE, command_line, machine_line, write_section

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/bench_live"
DEFAULT_ROWS = 1_000_000
DEFAULT_PROJECTS = 1_000
DEFAULT_SECONDS = 10.0
WRITERS = 2
# Operations a second per writer: a bounded load, not a saturating one, so a slower writer beside
# the cleanup shows the cleanup's effect and not a queue of its own making.
DEFAULT_RATE = 50.0
# The operation mix, by weight.
KINDS = ("insert", "update", "delete_group", "link")
WEIGHTS = (3, 4, 1.5, 1.5)
# How often the sampler reads pg_stat_activity.
SAMPLE_SECONDS = 0.01
WRITER_APPLICATION = "bench-live-writer"
SAMPLER_APPLICATION = "bench-live-sampler"
ADMIN_APPLICATION = "bench-live-admin"
# Cleanup runs beside the writer at most, however short each one is.
MAX_CLEANUP_RUNS = 20
# Sentry's group type id of performance regressions, as the dataset uses it.
REGRESSION_GROUP_TYPE = 1018
ORPHANS_COPY = "benchmark_live_orphans"
WRONG_DELETES = "benchmark_live_wrong_deletes"
DETECTOR_FUNCTION = "benchmark_live_check_delete"
DETECTOR_TRIGGER = "benchmark_live_check_delete"
DELETE_STATEMENTS = "benchmark_live_delete_statements"
STATEMENT_FUNCTION = "benchmark_live_note_delete"

DETECTOR_SQL = (
    f"CREATE TABLE {WRONG_DELETES} (regression_group_id bigint NOT NULL,"
    " group_id bigint NOT NULL, grouphash_id bigint NOT NULL, txid bigint NOT NULL,"
    " transaction_started timestamptz NOT NULL, checked_at timestamptz NOT NULL)",
    f"CREATE FUNCTION {DETECTOR_FUNCTION}() RETURNS trigger LANGUAGE plpgsql VOLATILE AS $$"
    " BEGIN"
    f" INSERT INTO {WRONG_DELETES}"
    " SELECT OLD.id, gh.group_id, gh.id, txid_current(), now(), clock_timestamp()"
    " FROM sentry_grouphash gh"
    " WHERE gh.project_id = OLD.project_id AND gh.hash = md5(OLD.fingerprint)"
    " AND gh.group_id IS NOT NULL"
    " AND EXISTS (SELECT 1 FROM sentry_groupedmessage g WHERE g.id = gh.group_id);"
    " RETURN NULL;"
    " END $$",
    f"CREATE CONSTRAINT TRIGGER {DETECTOR_TRIGGER} AFTER DELETE ON sentry_regressiongroup"
    f" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {DETECTOR_FUNCTION}()",
    # When each DELETE statement started (about when it took its snapshot) and ended: a wrong
    # delete's link committed before the statement (the rule should have seen it), while it ran
    # (its snapshot could not), or between its end and the batch's commit.
    f"CREATE TABLE {DELETE_STATEMENTS} (txid bigint NOT NULL, started timestamptz NOT NULL,"
    " ended timestamptz)",
    f"CREATE FUNCTION {STATEMENT_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN"
    " IF TG_WHEN = 'BEFORE' THEN"
    f" INSERT INTO {DELETE_STATEMENTS} VALUES (txid_current(), statement_timestamp(), NULL);"
    f" ELSE UPDATE {DELETE_STATEMENTS} SET ended = clock_timestamp()"
    " WHERE txid = txid_current() AND ended IS NULL;"
    " END IF;"
    " RETURN NULL;"
    " END $$",
    f"CREATE TRIGGER {STATEMENT_FUNCTION}_start BEFORE DELETE ON sentry_regressiongroup"
    f" FOR EACH STATEMENT EXECUTE FUNCTION {STATEMENT_FUNCTION}()",
    f"CREATE TRIGGER {STATEMENT_FUNCTION}_end AFTER DELETE ON sentry_regressiongroup"
    f" FOR EACH STATEMENT EXECUTE FUNCTION {STATEMENT_FUNCTION}()",
)


def postgres_seconds(setting: str) -> float:
    """A PostgreSQL duration setting (``2s``, ``500ms``, ``1min``; bare numbers are ms) in s."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|min)?\s*", setting)
    if match is None:
        raise ValueError(f"not a PostgreSQL duration: {setting!r}")
    value, unit = float(match[1]), match[2] or "ms"
    return value * {"ms": 0.001, "s": 1.0, "min": 60.0}[unit]


# The targets: the writer's p99 beside the cleanup at most this many times its p99 alone; its
# longest lock wait at most a batch's time target plus the batch lock timeout (lock_wait_target).
P99_TARGET = 2.0


def lock_wait_target(batch_time: float | None = None) -> tuple[float, str, float]:
    """The cleanup's batch time target (s; ``batch_time``, else the command's default), its batch
    lock timeout (as set) and their sum (s)."""
    # Imported here: the cleanup's modules need Django set up.
    from regression_tracking.cleanup.batches import LOCK_TIMEOUT
    from regression_tracking.services import DEFAULT_BATCH_TIME_SECONDS

    target = DEFAULT_BATCH_TIME_SECONDS if batch_time is None else batch_time
    return (target, LOCK_TIMEOUT, target + postgres_seconds(LOCK_TIMEOUT))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.live_writers",
        description="A Sentry-like writer alone and beside the cleanup: latency, lock waits,"
        " and rows deleted while their issue was live.",
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help="The PostgreSQL database to migrate, fill and benchmark (its data is replaced).",
    )
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="RegressionGroups (N).")
    parser.add_argument("--projects", type=int, default=DEFAULT_PROJECTS)
    parser.add_argument(
        "--seconds",
        type=float,
        default=DEFAULT_SECONDS,
        help="The writer alone this long, then beside the cleanup at least this long.",
    )
    parser.add_argument(
        "--rate", type=float, default=DEFAULT_RATE, help="Operations a second per writer."
    )
    parser.add_argument(
        "--batch-time",
        type=float,
        help="The cleanup's --batch-time (default: the command's own default).",
    )
    parser.add_argument("--json", type=Path, help="Also write the figures to this file.")
    parser.add_argument(
        "--page",
        type=Path,
        default=DEFAULT_PAGE,
        help="The figures page whose 'live_writers' section this run rewrites"
        " (default: %(default)s).",
    )
    parser.add_argument("--no-page", action="store_true", help="Leave the figures page alone.")
    options = parser.parse_args(argv)
    name = urlsplit(options.database_url).path.lstrip("/")
    if "bench" not in name and not name.startswith("test"):
        parser.error(f"--database-url: refusing to replace the data of database {name!r}")
    if options.rows < 200 or options.projects < 1:
        parser.error("--rows must be at least 200; --projects at least 1")
    if options.seconds <= 0 or options.rate <= 0:
        parser.error("--seconds and --rate must be positive")
    return options


def connect(application_name: str) -> psycopg.Connection[Any]:
    """A connection of its own to Django's default database, committing on its own."""
    from django.db import connection

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params["application_name"] = application_name
    return psycopg.connect(**params, autocommit=True)


def install_detector(conn: psycopg.Connection[Any]) -> None:
    """The wrong-delete detector: its side table, function and deferred trigger."""
    remove_detector(conn)
    with conn.transaction():
        for statement in DETECTOR_SQL:
            conn.execute(statement)


def remove_detector(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction():
        conn.execute(f"DROP TRIGGER IF EXISTS {DETECTOR_TRIGGER} ON sentry_regressiongroup")
        conn.execute(f"DROP FUNCTION IF EXISTS {DETECTOR_FUNCTION}()")
        conn.execute(f"DROP TABLE IF EXISTS {WRONG_DELETES}")
        for suffix in ("start", "end"):
            conn.execute(
                f"DROP TRIGGER IF EXISTS {STATEMENT_FUNCTION}_{suffix} ON sentry_regressiongroup"
            )
        conn.execute(f"DROP FUNCTION IF EXISTS {STATEMENT_FUNCTION}()")
        conn.execute(f"DROP TABLE IF EXISTS {DELETE_STATEMENTS}")


def wrongly_deleted(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """The rows deleted while a live issue of theirs was committed, as the detector saw them.

    Times are epoch seconds: the deleting transaction's start, its DELETE statement's start and
    end (None for a delete the statement triggers did not see) and the check at its commit.
    """
    rows = conn.execute(
        "SELECT w.regression_group_id, w.group_id, w.grouphash_id,"
        " extract(epoch FROM w.transaction_started), extract(epoch FROM d.started),"
        " extract(epoch FROM d.ended), extract(epoch FROM w.checked_at)"
        f" FROM {WRONG_DELETES} w LEFT JOIN LATERAL (SELECT started, ended"
        f" FROM {DELETE_STATEMENTS} s WHERE s.txid = w.txid ORDER BY started DESC LIMIT 1) d"
        " ON true ORDER BY w.regression_group_id"
    ).fetchall()

    def epoch(value: Any) -> float | None:
        return None if value is None else float(value)

    return [
        {
            "regression_group_id": row[0],
            "group_id": row[1],
            "grouphash_id": row[2],
            "transaction_started": float(row[3]),
            "delete_started": epoch(row[4]),
            "delete_ended": epoch(row[5]),
            "checked_at": float(row[6]),
        }
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class Orphan:
    id: int
    project_id: int
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Plan:
    """What the writer picks from: the dataset as built."""

    rows: int
    projects: int
    # The old orphans, as built: what the cleanup deletes and the writer updates and links.
    orphans: tuple[Orphan, ...]

    def random_row(self, rng: random.Random) -> int:
        return rng.randint(1, self.rows)

    def random_linked_group(self, rng: random.Random) -> int:
        """The id of a Group the dataset built (a row id whose fate is a live issue)."""
        from benchmarks.dataset import (
            FATE_MODULUS,
            GROUPHASH_WITHOUT_GROUP_FATE,
            MISSING_GROUPHASH_FATE,
        )

        while True:
            row_id = self.random_row(rng)
            if row_id % FATE_MODULUS not in (MISSING_GROUPHASH_FATE, GROUPHASH_WITHOUT_GROUP_FATE):
                return row_id


def _new_group(cursor: psycopg.Cursor[Any], project_id: int, fingerprint: str) -> int:
    cursor.execute(
        "INSERT INTO sentry_groupedmessage (project_id, logger, level, message, view, status,"
        " substatus, times_seen, last_seen, first_seen, active_at, type)"
        " VALUES (%s, '', 40, %s, %s, 0, 7, 1, now(), now(), now(), %s) RETURNING id",
        [project_id, f"Endpoint regression {fingerprint}", "/api/live/", REGRESSION_GROUP_TYPE],
    )
    row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def insert_op(cursor: psycopg.Cursor[Any], plan: Plan, rng: random.Random) -> int:
    """A new regression and its issue: Group, GroupHash, RegressionGroup."""
    project_id = rng.randint(1, plan.projects)
    fingerprint = uuid.UUID(int=rng.getrandbits(128)).hex + f"{rng.getrandbits(32):08x}"
    group_id = _new_group(cursor, project_id, fingerprint)
    cursor.execute(
        "INSERT INTO sentry_grouphash (project_id, hash, group_id) VALUES (%s, md5(%s), %s)",
        [project_id, fingerprint, group_id],
    )
    cursor.execute(
        "INSERT INTO sentry_regressiongroup (date_added, date_updated, date_regressed, version,"
        " active, project_id, type, fingerprint, baseline, regressed)"
        " VALUES (now(), now(), now(), 1, true, %s, 0, %s, 100, 200) RETURNING id",
        [project_id, fingerprint],
    )
    row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def update_op(cursor: psycopg.Cursor[Any], plan: Plan, rng: random.Random) -> int:
    """An existing regression's figures; half of the time one of the old orphans."""
    if plan.orphans and rng.random() < 0.5:
        row_id = rng.choice(plan.orphans).id
    else:
        row_id = plan.random_row(rng)
    cursor.execute(
        "UPDATE sentry_regressiongroup SET date_updated = now(), regressed = regressed + 1"
        " WHERE id = %s",
        [row_id],
    )
    return row_id


def delete_group_op(cursor: psycopg.Cursor[Any], plan: Plan, rng: random.Random) -> int:
    """A live issue deleted with its hashes (on_delete=CASCADE), orphaning its regression."""
    group_id = plan.random_linked_group(rng)
    cursor.execute("DELETE FROM sentry_grouphash WHERE group_id = %s", [group_id])
    cursor.execute("DELETE FROM sentry_groupedmessage WHERE id = %s", [group_id])
    return group_id


def link(cursor: psycopg.Cursor[Any], orphan: Orphan) -> int:
    """The orphan's issue appears: a new Group, and its key's GroupHash pointing at it."""
    group_id = _new_group(cursor, orphan.project_id, orphan.fingerprint)
    cursor.execute(
        "INSERT INTO sentry_grouphash (project_id, hash, group_id) VALUES (%s, md5(%s), %s)"
        " ON CONFLICT (project_id, hash)"
        " DO UPDATE SET group_id = EXCLUDED.group_id, group_tombstone_id = NULL",
        [orphan.project_id, orphan.fingerprint, group_id],
    )
    return group_id


def link_op(cursor: psycopg.Cursor[Any], plan: Plan, rng: random.Random) -> int:
    orphan = rng.choice(plan.orphans)
    link(cursor, orphan)
    return orphan.id


OPERATIONS: dict[str, Callable[[psycopg.Cursor[Any], Plan, random.Random], int]] = {
    "insert": insert_op,
    "update": update_op,
    "delete_group": delete_group_op,
    "link": link_op,
}


@dataclass(frozen=True, slots=True)
class Operation:
    kind: str
    # perf_counter at BEGIN, and BEGIN to the end of COMMIT (or of the rollback, on an error).
    started: float
    seconds: float
    ok: bool
    # The row (or, for delete_group, the Group) it acted on.
    target: int
    # The same moments on the wall clock (the database server's, on this machine): to compare
    # with the detector's timestamps.
    wall_started: float
    wall_ended: float


class Background:
    """A daemon thread whose exception the main thread re-raises (``check``)."""

    name = "background"

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def _run(self) -> None:
        try:
            self.work()
        except BaseException as error:
            self.error = error

    def work(self) -> None:
        raise NotImplementedError

    def check(self) -> None:
        if self.error is not None:
            raise self.error


class Writer(Background):
    """One writer thread on its own connection: paced operations, one transaction each."""

    def __init__(self, number: int, plan: Plan, rate: float, stop: threading.Event) -> None:
        self.name = f"{WRITER_APPLICATION}-{number}"
        self.number, self.plan, self.rate = number, plan, rate
        self.operations: list[Operation] = []
        super().__init__(stop)

    def work(self) -> None:
        rng = random.Random(self.number)
        interval = 1 / self.rate
        with connect(self.name) as conn:
            next_at = time.perf_counter()
            while not self.stop.is_set():
                kind = rng.choices(KINDS, weights=WEIGHTS)[0]
                started, wall_started = time.perf_counter(), time.time()
                ok, target = True, 0
                try:
                    with conn.transaction(), conn.cursor() as cursor:
                        target = OPERATIONS[kind](cursor, self.plan, rng)
                except psycopg.Error:
                    ok = False
                seconds, wall_ended = time.perf_counter() - started, time.time()
                self.operations.append(
                    Operation(kind, started, seconds, ok, target, wall_started, wall_ended)
                )
                # Paced, without catching up: a slow operation delays the next, never bunches.
                next_at = max(next_at + interval, time.perf_counter())
                self.stop.wait(max(0.0, next_at - time.perf_counter()))


class LockSampler(Background):
    """Reads the writer's lock waits from pg_stat_activity every SAMPLE_SECONDS."""

    name = SAMPLER_APPLICATION

    def __init__(self, stop: threading.Event) -> None:
        # (perf_counter, the longest wait of a writer backend then, or 0.0 when none waited).
        self.samples: list[tuple[float, float]] = []
        super().__init__(stop)

    def work(self) -> None:
        with connect(self.name) as conn:
            while not self.stop.is_set():
                row = conn.execute(
                    "SELECT coalesce(max(extract(epoch FROM clock_timestamp() - query_start)), 0)"
                    " FROM pg_stat_activity WHERE application_name LIKE %s"
                    " AND wait_event_type = 'Lock'",
                    [f"{WRITER_APPLICATION}-%"],
                ).fetchone()
                assert row is not None
                self.samples.append((time.perf_counter(), float(row[0])))
                self.stop.wait(SAMPLE_SECONDS)


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of values sorted ascending."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def latency(operations: Sequence[Operation]) -> dict[str, Any]:
    seconds = sorted(op.seconds for op in operations)
    return {
        "ops": len(seconds),
        "errors": sum(not op.ok for op in operations),
        "p50": percentile(seconds, 0.50),
        "p99": percentile(seconds, 0.99),
        "max": seconds[-1] if seconds else math.nan,
    }


def phase_figures(
    windows: Sequence[tuple[float, float]],
    operations: Sequence[Operation],
    samples: Sequence[tuple[float, float]],
) -> dict[str, Any]:
    """The operations that started, and the lock samples taken, inside ``windows``."""

    def inside(moment: float) -> bool:
        return any(start <= moment < end for start, end in windows)

    mine = [op for op in operations if inside(op.started)]
    waits = [wait for moment, wait in samples if inside(moment)]
    return {
        "seconds": sum(end - start for start, end in windows),
        "all": latency(mine),
        "by_kind": {kind: latency([op for op in mine if op.kind == kind]) for kind in KINDS},
        "longest_lock_wait": max(waits, default=0.0),
        "lock_samples": len(waits),
        "lock_samples_waiting": sum(wait > 0 for wait in waits),
    }


def load_plan(rows: int, projects: int) -> Plan:
    from benchmarks import dataset

    orphans = dataset.execute(
        "SELECT id, project_id, fingerprint FROM sentry_regressiongroup"
        " WHERE id %% %s IN (%s, %s) ORDER BY id",
        [
            dataset.FATE_MODULUS,
            dataset.MISSING_GROUPHASH_FATE,
            dataset.GROUPHASH_WITHOUT_GROUP_FATE,
        ],
    )
    return Plan(
        rows=rows,
        projects=projects,
        orphans=tuple(Orphan(int(i), int(p), str(f)) for i, p, f in orphans),
    )


def copy_orphans() -> None:
    """Keep the old orphans as built, to put back the rows a cleanup run deleted."""
    from benchmarks import dataset

    dataset.execute(f"DROP TABLE IF EXISTS {ORPHANS_COPY}")
    dataset.execute(
        f"CREATE UNLOGGED TABLE {ORPHANS_COPY} AS SELECT * FROM sentry_regressiongroup"
        " WHERE id %% %s IN (%s, %s)",
        [
            dataset.FATE_MODULUS,
            dataset.MISSING_GROUPHASH_FATE,
            dataset.GROUPHASH_WITHOUT_GROUP_FATE,
        ],
    )


def put_orphans_back() -> int:
    """Re-insert the copied orphans the cleanup deleted; how many."""
    from benchmarks import dataset

    [(restored,)] = dataset.execute(
        "WITH restored AS (INSERT INTO sentry_regressiongroup"
        f" SELECT o.* FROM {ORPHANS_COPY} o WHERE NOT EXISTS"
        " (SELECT 1 FROM sentry_regressiongroup rg WHERE rg.id = o.id) RETURNING 1)"
        " SELECT count(*) FROM restored"
    )
    return int(restored)


def cleanup_summary(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    sizes = [run["result"]["batch_sizes"] for run in runs if run["result"].get("batch_sizes")]
    return {
        "runs": len(runs),
        "deleted": sum(run["result"]["acted"] for run in runs),
        "eligible": sum(run["result"]["eligible"] for run in runs),
        "skipped": sum(run["result"]["skipped"] for run in runs),
        "changed_meanwhile": sum(run["result"]["changed_meanwhile"] for run in runs),
        "batches": sum(run["result"]["batches"] for run in runs),
        "batch_sizes": {
            "min": min(size["min"] for size in sizes),
            "max": max(size["max"] for size in sizes),
        }
        if sizes
        else None,
        "elapsed_seconds": sum(run["result"]["elapsed_seconds"] for run in runs),
        "wall_seconds": sum(run["wall_seconds"] for run in runs),
    }


def measure(
    *,
    database_url: str,
    rows: int,
    projects: int = DEFAULT_PROJECTS,
    seconds: float = DEFAULT_SECONDS,
    rate: float = DEFAULT_RATE,
    writers: int = WRITERS,
    batch_time: float | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """Every figure of the scenario, as a JSON-ready dict; Django must already use the database.

    ``database_url`` is the same database, for the cleanup's subprocess; ``batch_time`` its
    ``--batch-time`` (None: the command's default).
    """
    from benchmarks import dataset
    from benchmarks.commands import CLEANUP_COMMAND, run_manage

    cleanup_flags = [] if batch_time is None else ["--batch-time", f"{batch_time:g}"]
    expected = dataset.build(rows=rows, projects=projects)
    plan = load_plan(rows, projects)
    assert len(plan.orphans) == expected.orphans, (len(plan.orphans), expected)
    copy_orphans()
    progress(f"built {rows:,} rows, {expected.orphans:,} orphans")
    stop = threading.Event()
    pool = [Writer(number, plan, rate, stop) for number in range(1, writers + 1)]
    sampler = LockSampler(stop)
    runs: list[dict[str, Any]] = []
    beside: list[tuple[float, float]] = []
    with connect(ADMIN_APPLICATION) as admin:
        install_detector(admin)
        try:
            workers: list[Background] = [sampler, *pool]
            for worker in workers:
                worker.thread.start()
            alone_started = time.perf_counter()
            stop.wait(seconds)
            alone = [(alone_started, time.perf_counter())]
            progress(f"writer alone: {alone[0][1] - alone[0][0]:.1f} s")
            while sum(end - start for start, end in beside) < seconds:
                if len(runs) == MAX_CLEANUP_RUNS:
                    break
                restored = put_orphans_back() if runs else 0
                started = time.perf_counter()
                run = run_manage(
                    [CLEANUP_COMMAND, *cleanup_flags, "--format", "json"], database_url
                )
                ended = time.perf_counter()
                beside.append((started, ended))
                runs.append(
                    {"wall_seconds": run.seconds, "restored_before": restored, "result": run.result}
                )
                progress(
                    f"cleanup run {len(runs)}: deleted {run.result['acted']:,} in"
                    f" {run.result['batches']} batches, {run.seconds:.1f} s"
                )
                for worker in workers:
                    worker.check()
        finally:
            stop.set()
            for worker in (sampler, *pool):
                if worker.thread.is_alive():
                    worker.thread.join()
            wrong = wrongly_deleted(admin)
            remove_detector(admin)
            dataset.execute(f"DROP TABLE IF EXISTS {ORPHANS_COPY}")
    for worker in (sampler, *pool):
        worker.check()
    operations = sorted(
        (op for writer in pool for op in writer.operations), key=lambda op: op.started
    )
    phases = {
        "alone": phase_figures(alone, operations, sampler.samples),
        "beside": phase_figures(beside, operations, sampler.samples),
    }
    for row in wrong:
        row["when_linked"] = when_linked(row, operations)
    linked_beside = {
        op.target
        for op in operations
        if op.kind == "link" and op.ok and any(s <= op.started < e for s, e in beside)
    }
    figures: dict[str, Any] = {
        "rows": rows,
        "projects": projects,
        "orphans": expected.orphans,
        "writers": writers,
        "rate_per_writer": rate,
        "seconds": seconds,
        "cleanup_flags": cleanup_flags,
        "batch_time": batch_time,
        "phases": phases,
        "cleanup": cleanup_summary(runs),
        "cleanup_runs": runs,
        "orphans_linked_beside": len(linked_beside),
        "wrongly_deleted": len(wrong),
        "wrongly_deleted_rows": wrong,
        "wrongly_deleted_by_link_timing": dict(Counter(row["when_linked"] for row in wrong)),
        "targets": {
            "lock_wait_seconds": lock_wait_target(batch_time)[2],
            "p99_ratio": P99_TARGET,
            "wrongly_deleted": 0,
        },
    }
    figures["met"] = targets_met(figures)
    return figures


# Where a wrongly deleted row's link fell against its batch's DELETE statement. Only the first is
# the orphan rule's fault: the statement started after the issue was committed.
LINKED_BEFORE_DELETE = "committed before the DELETE started"
# The others committed after the statement's snapshot, which cannot see them; the cleanup's check
# before its commit sees those committed before the check starts, so what is left committed during
# the check or after it. For a link that overlapped the statement's start the order is not known
# to the millisecond, only likely.
LINK_OVERLAPPED_DELETE_START = "overlapped the DELETE's start"
LINKED_DURING_DELETE = "began and committed while the DELETE ran"
LINKED_AFTER_DELETE_START = "began after the DELETE started and returned after it ended"
NO_LINK = "no link found"
AFTER_THE_SNAPSHOT = (LINK_OVERLAPPED_DELETE_START, LINKED_DURING_DELETE, LINKED_AFTER_DELETE_START)


def when_linked(wrong: dict[str, Any], operations: Sequence[Operation]) -> str:
    """Where the link that made a wrongly deleted row live fell against its DELETE statement."""
    links = [
        op
        for op in operations
        if op.kind == "link"
        and op.ok
        and op.target == wrong["regression_group_id"]
        and op.wall_started < wrong["checked_at"]
    ]
    if not links or wrong["delete_started"] is None:
        return NO_LINK
    link = max(links, key=lambda op: op.wall_started)
    wrong["link_started"], wrong["link_ended"] = link.wall_started, link.wall_ended
    if link.wall_ended < wrong["delete_started"]:
        # Committed (and returned) before the DELETE started: the rule should have seen it.
        return LINKED_BEFORE_DELETE
    if link.wall_started < wrong["delete_started"]:
        return LINK_OVERLAPPED_DELETE_START
    # The link's transaction began after the DELETE took its snapshot: invisible to it.
    ended = wrong["delete_ended"]
    if ended is not None and link.wall_ended < ended:
        return LINKED_DURING_DELETE
    return LINKED_AFTER_DELETE_START


def p99_ratio(figures: dict[str, Any]) -> float:
    alone, beside = (figures["phases"][name]["all"]["p99"] for name in ("alone", "beside"))
    return float(beside / alone) if alone > 0 else math.inf


TARGET_NAMES = {
    "lock_wait": "the longest lock wait",
    "p99": "p99 beside the cleanup over p99 alone",
    "wrongly_deleted": "rows wrongly deleted",
}


def targets_met(figures: dict[str, Any]) -> dict[str, bool]:
    return {
        "lock_wait": figures["phases"]["beside"]["longest_lock_wait"]
        <= figures["targets"]["lock_wait_seconds"],
        "p99": p99_ratio(figures) <= P99_TARGET,
        "wrongly_deleted": figures["wrongly_deleted"] == 0,
    }


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def summarize(figures: dict[str, Any]) -> str:
    lines = [f"N={figures['rows']:,} orphans={figures['orphans']:,}"]
    for name, phase in figures["phases"].items():
        every = phase["all"]
        lines.append(
            f"  {name:<6} {phase['seconds']:5.1f} s, {every['ops']:,} ops ({every['errors']}"
            f" errors): p50 {ms(every['p50'])}, p99 {ms(every['p99'])}, max {ms(every['max'])};"
            f" longest lock wait {ms(phase['longest_lock_wait'])}"
        )
    cleanup = figures["cleanup"]
    lines.append(
        f"  cleanup: {cleanup['runs']} run(s), deleted {cleanup['deleted']:,} in"
        f" {cleanup['batches']} batches, {cleanup['elapsed_seconds']:.2f} s;"
        f" wrongly deleted {figures['wrongly_deleted']}"
        f" {figures['wrongly_deleted_by_link_timing'] or ''}"
    )
    return "\n".join(lines)


def ops_cell(phase: dict[str, Any]) -> str:
    kinds = " / ".join(f"{phase['by_kind'][kind]['ops']:,}" for kind in KINDS)
    errors = phase["all"]["errors"]
    return f"{phase['all']['ops']:,} ({kinds})" + (f", {errors} failed" if errors else "")


def p99_by_kind(phase: dict[str, Any]) -> str:
    return " / ".join(f"{phase['by_kind'][kind]['p99'] * 1000:.1f}" for kind in KINDS)


def page_section(figures: dict[str, Any], command: str) -> str:
    """The figures page's table of this run, the cleanup's summary and the targets."""
    labels = {"alone": "writer alone", "beside": "writer beside the cleanup"}
    lines = [
        machine_line(command),
        "",
        f"N = {figures['rows']:,} RegressionGroups, {figures['orphans']:,} old orphans;"
        f" {figures['writers']} writers at {figures['rate_per_writer']:g} operations a second"
        " each.",
        "",
        "| phase | seconds | ops (insert / update / delete_group / link) | p50 | p99 | max"
        " | p99 by kind, ms | longest lock wait |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, phase in figures["phases"].items():
        every = phase["all"]
        lines.append(
            f"| {labels[name]} | {phase['seconds']:.1f} | {ops_cell(phase)} | {ms(every['p50'])}"
            f" | {ms(every['p99'])} | {ms(every['max'])} | {p99_by_kind(phase)}"
            f" | {ms(phase['longest_lock_wait'])} |"
        )
    cleanup = figures["cleanup"]
    sizes = cleanup["batch_sizes"]
    size_text = f"sizes {sizes['min']:,} to {sizes['max']:,}" if sizes else "no batch"
    lines += [
        "",
        f"The cleanup ({cleanup['runs']} run(s), "
        + (
            f"`{' '.join(figures['cleanup_flags'])}`"
            if figures["cleanup_flags"]
            else "default flags"
        )
        + ", `--format json`): deleted"
        f" {cleanup['deleted']:,} of {cleanup['eligible']:,} eligible in {cleanup['batches']}"
        f" batches ({size_text}), {cleanup['skipped']:,} skipped as locked,"
        f" {cleanup['changed_meanwhile']:,} changed meanwhile; elapsed"
        f" {cleanup['elapsed_seconds']:.2f} s ({cleanup['wall_seconds']:.2f} s of processes)."
        f" Old orphans linked by the writer beside it: {figures['orphans_linked_beside']:,}.",
        "",
    ]
    if figures["wrongly_deleted"]:
        timing = figures["wrongly_deleted_by_link_timing"]
        lines += [
            f"The {figures['wrongly_deleted']} rows deleted with a live issue, by when the writer's"
            " link of each ran against its batch's DELETE statement:"
            " " + "; ".join(f"{count} {label}" for label, count in sorted(timing.items())) + ".",
            "",
        ]
    met = figures["met"]
    beside = figures["phases"]["beside"]

    batch_time, lock_timeout, lock_wait_limit = lock_wait_target(figures.get("batch_time"))

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    lines += [
        "Targets:",
        "",
        f"- the writer's longest lock wait beside the cleanup at most one batch's time target"
        f" plus the batch lock timeout ({batch_time:g} s + {lock_timeout} ="
        f" {lock_wait_limit:g} s): {ms(beside['longest_lock_wait'])},"
        f" {verdict(met['lock_wait'])};",
        f"- its p99 beside the cleanup at most {P99_TARGET:g}x its p99 alone:"
        f" {p99_ratio(figures):.2f}x, {verdict(met['p99'])};",
        f"- rows deleted while their issue was live at their batch's commit: 0 wanted,"
        f" {figures['wrongly_deleted']}, {verdict(met['wrongly_deleted'])}.",
        "",
        "**Every target met.**"
        if all(met.values())
        else "**Not met:** "
        + "; ".join(TARGET_NAMES[name] for name, ok in met.items() if not ok)
        + ".",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    from benchmarks.run import migrate, setup_django

    setup_django(options.database_url)
    migrate(options.database_url)
    figures = measure(
        database_url=options.database_url,
        rows=options.rows,
        projects=options.projects,
        seconds=options.seconds,
        rate=options.rate,
        batch_time=options.batch_time,
        progress=lambda message: print(message, flush=True),
    )
    print(summarize(figures), flush=True)
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2) + "\n")
    if not options.no_page:
        command = command_line(
            "python -m benchmarks.live_writers", None if argv is None else list(argv)
        )
        write_section(options.page, "live_writers", page_section(figures, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
