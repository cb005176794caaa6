"""The floor: the same work as one hand-written statement, as PostgreSQL runs it by default.

Also the statement-level profile of the cleanup, run in-process, which says where its time goes.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import connection

from regression_tracking.services import CleanupAction, cleanup_orphaned_regressions

# The orphan predicate, written by hand (the services build theirs from the models).
ORPHAN = (
    "NOT EXISTS (SELECT 1 FROM sentry_grouphash live"
    " WHERE live.project_id = rg.project_id AND live.hash = md5(rg.fingerprint)"
    " AND live.group_id IS NOT NULL)"
)
OLD_ENOUGH = "rg.date_added < now() - interval '24 hours'"

# A figure beside detection's floor: the orphans counted, nothing more. It never reads the
# GroupHashes without a group, which the reason needs.
FLOOR_COUNT = f"SELECT count(*) FROM sentry_regressiongroup rg WHERE {ORPHAN}"
# Detection's floor: everything detection returns (the rows scanned, the orphans by reason, the
# too recent ones, the eligible count and ids in id order), as one hand-written statement.
FLOOR_CENSUS = (
    "SELECT (SELECT count(*) FROM sentry_regressiongroup),"
    " count(*) FILTER (WHERE gh.id IS NULL), count(*) FILTER (WHERE gh.id IS NOT NULL),"
    f" count(*) FILTER (WHERE NOT ({OLD_ENOUGH})), count(*) FILTER (WHERE {OLD_ENOUGH}),"
    " string_agg(int8send(rg.id), ''::bytea ORDER BY rg.id) FILTER (WHERE"
    f" {OLD_ENOUGH})"
    " FROM sentry_regressiongroup rg LEFT JOIN sentry_grouphash gh"
    " ON gh.project_id = rg.project_id AND gh.hash = md5(rg.fingerprint)"
    " WHERE gh.group_id IS NULL"
)
FLOOR_DELETE = f"DELETE FROM sentry_regressiongroup rg WHERE {OLD_ENOUGH} AND {ORPHAN}"
FLOOR_UPDATE = (
    "UPDATE sentry_regressiongroup rg SET active = false, date_resolved = now(),"
    f" date_updated = now() WHERE rg.active AND {OLD_ENOUGH} AND {ORPHAN}"
)


@dataclass(frozen=True, slots=True)
class Statement:
    seconds: float
    # Rows counted (SELECT count) or changed (DELETE, UPDATE).
    rows: int


def run_statement(sql: str, params: list[Any] | None = None) -> Statement:
    """Run one statement in autocommit (its commit included) and time it from the client."""
    with connection.cursor() as cursor:
        started = time.perf_counter()
        cursor.execute(sql, params)
        rows = cursor.fetchone()[0] if sql.lstrip().upper().startswith("SELECT") else None
        seconds = time.perf_counter() - started
        return Statement(seconds=seconds, rows=cursor.rowcount if rows is None else int(rows))


# How long to wait for the server's statistics to take in what ended backends and workers did.
STATS_SETTLE_SECONDS = 0.3
STATS_SETTLE_ATTEMPTS = 20


def database_blocks() -> int:
    """Buffers touched in this database so far (shared hits plus reads), every backend's.

    Statistics reach the shared counters when a backend goes idle (forced here for this one) or
    ends (a parallel worker, a subprocess's connection): read until two readings agree.
    """
    previous = None
    with connection.cursor() as cursor:
        for _ in range(STATS_SETTLE_ATTEMPTS):
            cursor.execute("SELECT pg_stat_force_next_flush()")
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT blks_hit + blks_read FROM pg_stat_database"
                " WHERE datname = current_database()"
            )
            blocks = int(cursor.fetchone()[0])
            if blocks == previous:
                return blocks
            previous = blocks
            time.sleep(STATS_SETTLE_SECONDS)
    assert previous is not None
    return previous


def explain_plan(sql: str, params: list[Any] | None = None) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of ``sql``, rolled back so it changes nothing."""
    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
        try:
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
            return "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("ROLLBACK")


def statement_kind(sql: str) -> str:
    """Which step of the cleanup a statement belongs to, from its text."""
    text = sql.lstrip().upper()
    if "STRING_AGG(INT8SEND(" in text:
        return "detect_orphans"
    if text.startswith("SELECT") and text.rstrip().endswith("FOR UPDATE"):
        return "lock_rows"
    if text.startswith("SELECT CHANGED.ID FROM UNNEST("):
        return "issue_check"
    if text.startswith(("DELETE", "UPDATE")) or (text.startswith("SELECT") and " IN (" in text):
        return "batches"
    return "other"


@contextmanager
def timing_statements() -> Iterator[dict[str, list[float]]]:
    """Time every statement of the default connection, by ``statement_kind``."""
    times: defaultdict[str, list[float]] = defaultdict(list)

    def timer(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            times[statement_kind(sql)].append(time.perf_counter() - started)

    with connection.execute_wrapper(timer):
        yield times


def profile_cleanup(
    *, action: CleanupAction, dry_run: bool, batch_size: int, **request: Any
) -> dict[str, dict[str, float]]:
    """Run the cleanup in-process and split its time by step: statements, and Python around them.

    Statement times include fetching their rows; ``python`` is the rest of the service's time
    (the commits of the batches included).
    """
    with timing_statements() as times:
        started = time.perf_counter()
        cleanup_orphaned_regressions(
            action=action,
            dry_run=dry_run,
            batch_size=batch_size,
            min_age=timedelta(hours=24),
            **request,
        )
        total = time.perf_counter() - started
    profile = {
        kind: {"statements": len(seconds), "seconds": sum(seconds)}
        for kind, seconds in sorted(times.items())
    }
    in_statements = sum(step["seconds"] for step in profile.values())
    profile["python"] = {"statements": 0, "seconds": total - in_statements}
    profile["total"] = {"statements": sum(len(s) for s in times.values()), "seconds": total}
    return profile
