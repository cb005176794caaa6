"""The Sentry-shaped dataset, built in the database with ``INSERT … SELECT generate_series``.

Row ``i`` of ``sentry_regressiongroup`` (ids 1..rows) is a regression in a pseudo-random project;
its fate is ``i % 20``: 0 has no GroupHash (``missing_grouphash``), 10 has a GroupHash without a
group (``grouphash_without_group``), every other value has a live Group and GroupHash. So 10% are
orphans, split evenly between the reasons and spread over every project and the whole id range.
As many unrelated GroupHashes again (a second hash of each issue) bring the GroupHash table to
``1.9 * rows``. Every row is a month old or more: past any grace period.

Snapshots let each destructive measurement start from the same rows, in the same physical order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.db import connection

# What the data holds, by `i % FATE_MODULUS` of the RegressionGroup id.
FATE_MODULUS = 20
MISSING_GROUPHASH_FATE = 0
GROUPHASH_WITHOUT_GROUP_FATE = 10
# `i % ACTIVE_MODULUS == INACTIVE_REMAINDER`: an inactive (older) version; about 1 in 7.
ACTIVE_MODULUS = 7
INACTIVE_REMAINDER = 3
# Sentry's group type id of performance regressions (PerformanceP95EndpointRegressionGroupType).
REGRESSION_GROUP_TYPE = 1018

SETTLE_ATTEMPTS = 5
SETTLE_PAUSE_SECONDS = 1.0

REGRESSION_TABLE = "sentry_regressiongroup"
SNAPSHOT_TABLE = "benchmark_snapshot_regressiongroup"
TABLES = (
    "sentry_organization",
    "sentry_project",
    "sentry_groupedmessage",
    "sentry_grouphash",
    "sentry_regressiongroup",
)


@dataclass(frozen=True, slots=True)
class Expected:
    """What the data holds, counted in SQL after it was built: the benchmark checks against it."""

    rows: int
    grouphashes: int
    orphans: int
    missing_grouphash: int
    grouphash_without_group: int
    active_orphans: int


def execute(sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """Run one statement on the default connection (autocommit) and return its rows, if any."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall()) if cursor.description else []


def project_sql(row_id: str, projects: int) -> str:
    """The pseudo-random project of row ``row_id``, independent of its fate."""
    return f"1 + (hashint8({row_id}::bigint) & 2147483647) %% {projects}"


def build(*, rows: int, projects: int) -> Expected:
    """Empty the five tables and fill them with ``rows`` RegressionGroups over ``projects``."""
    execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    # Skip the per-row foreign key triggers: the rows are consistent by construction.
    execute("SET session_replication_role = replica")
    try:
        _insert(rows=rows, projects=projects)
    finally:
        execute("SET session_replication_role = DEFAULT")
    for table in TABLES:
        execute(
            f"SELECT setval(pg_get_serial_sequence(%s, 'id'), GREATEST(MAX(id), 1)) FROM {table}",
            [table],
        )
    vacuum()
    return count_expected()


def _insert(*, rows: int, projects: int) -> None:
    fate = f"(id %% {FATE_MODULUS})"
    execute(
        "INSERT INTO sentry_organization (id, name, slug, status, date_added)"
        " VALUES (1, 'Benchmark', 'benchmark', 0, now())"
    )
    execute(
        "INSERT INTO sentry_project (id, organization_id, slug, name, status, date_added)"
        " SELECT p, 1, 'project-' || p, 'Project ' || p, 0, now()"
        " FROM generate_series(1, %s) p",
        [projects],
    )
    # Endpoint fingerprints are 40 hex digits like Sentry's sha1; function ones the id in hex.
    execute(
        "INSERT INTO sentry_regressiongroup (id, date_added, date_updated, date_regressed,"
        " date_resolved, version, active, project_id, type, fingerprint, baseline, regressed)"
        " SELECT i, added, added, added, NULL, 1, i %% %s <> %s, "
        + project_sql("i", projects)
        + ", i %% 2,"
        " CASE WHEN i %% 2 = 0 THEN left(encode(sha256(convert_to("
        "'p95_transaction_duration_regression-/api/endpoint/' || i, 'UTF8')), 'hex'), 40)"
        " ELSE to_hex(i::bigint * 7919) END,"
        " 100 + i %% 50, 200 + i %% 70"
        " FROM generate_series(1, %s) i,"
        " LATERAL (SELECT now() - interval '60 days' + (interval '30 days' / %s) * i AS added) t",
        [ACTIVE_MODULUS, INACTIVE_REMAINDER, rows, rows],
    )
    execute(
        "INSERT INTO sentry_groupedmessage (id, project_id, logger, level, message, view, status,"
        " substatus, times_seen, last_seen, first_seen, resolved_at, active_at, short_id, type)"
        " SELECT id, project_id, '', 40, 'Endpoint regression ' || id, '/api/endpoint/' || id,"
        " 0, 7, 1, date_added, date_added, NULL, date_added, id, %s"
        f" FROM sentry_regressiongroup WHERE {fate} NOT IN (%s, %s) ORDER BY id",
        [REGRESSION_GROUP_TYPE, MISSING_GROUPHASH_FATE, GROUPHASH_WITHOUT_GROUP_FATE],
    )
    # The issue's own hash (live, or tombstoned when discarded), then one more hash per issue.
    execute(
        "INSERT INTO sentry_grouphash (id, project_id, hash, group_id, group_tombstone_id, state)"
        " SELECT id, project_id, md5(fingerprint),"
        f" CASE WHEN {fate} = %s THEN NULL ELSE id END,"
        f" CASE WHEN {fate} = %s THEN id END, NULL::integer"
        f" FROM sentry_regressiongroup WHERE {fate} <> %s"
        " UNION ALL"
        " SELECT %s + id, project_id, md5('unrelated-' || id),"
        f" CASE WHEN {fate} = %s THEN NULL ELSE id END,"
        f" CASE WHEN {fate} = %s THEN id END, NULL::integer"
        f" FROM sentry_regressiongroup WHERE {fate} <> %s",
        [
            GROUPHASH_WITHOUT_GROUP_FATE,
            GROUPHASH_WITHOUT_GROUP_FATE,
            MISSING_GROUPHASH_FATE,
            rows,
            GROUPHASH_WITHOUT_GROUP_FATE,
            GROUPHASH_WITHOUT_GROUP_FATE,
            MISSING_GROUPHASH_FATE,
        ],
    )


def vacuum(tables: tuple[str, ...] = TABLES) -> None:
    """Statistics, visibility map and hint bits set, dirty pages flushed: a settled database.

    VACUUM cannot mark pages all-visible while another transaction (autovacuum's own ANALYZE of
    the freshly loaded table, say) holds an older snapshot; then index-only scans visit the heap
    and timings drift. So vacuum again until every page is all-visible, for a while.
    """
    for _ in range(SETTLE_ATTEMPTS):
        for table in tables:
            execute(f"VACUUM (ANALYZE) {table}")
        unsettled = execute(
            "SELECT relname FROM pg_class WHERE relname = ANY(%s) AND relallvisible < relpages",
            [list(tables)],
        )
        if not unsettled:
            break
        time.sleep(SETTLE_PAUSE_SECONDS)
    execute("CHECKPOINT")


def count_expected() -> Expected:
    """Count, independently of the code under test, what the cleanup should find."""
    [(rows, orphans, missing, without_group, active_orphans)] = execute(
        "SELECT count(*), count(*) FILTER (WHERE fate IN (%s, %s)),"
        " count(*) FILTER (WHERE fate = %s), count(*) FILTER (WHERE fate = %s),"
        " count(*) FILTER (WHERE fate IN (%s, %s) AND active)"
        " FROM (SELECT id %% %s AS fate, active FROM sentry_regressiongroup) rg",
        [
            MISSING_GROUPHASH_FATE,
            GROUPHASH_WITHOUT_GROUP_FATE,
            MISSING_GROUPHASH_FATE,
            GROUPHASH_WITHOUT_GROUP_FATE,
            MISSING_GROUPHASH_FATE,
            GROUPHASH_WITHOUT_GROUP_FATE,
            FATE_MODULUS,
        ],
    )
    [(grouphashes,)] = execute("SELECT count(*) FROM sentry_grouphash")
    return Expected(
        rows=int(rows),
        grouphashes=int(grouphashes),
        orphans=int(orphans),
        missing_grouphash=int(missing),
        grouphash_without_group=int(without_group),
        active_orphans=int(active_orphans),
    )


def snapshot() -> None:
    """Keep a copy of the RegressionGroups (the only table the cleanup changes)."""
    execute(f"DROP TABLE IF EXISTS {SNAPSHOT_TABLE}")
    execute(f"CREATE UNLOGGED TABLE {SNAPSHOT_TABLE} AS SELECT * FROM {REGRESSION_TABLE}")


def restore() -> None:
    """Put the snapshot back, in id order as built, and settle the table again."""
    execute(f"TRUNCATE {REGRESSION_TABLE}")
    execute("SET session_replication_role = replica")
    try:
        execute(f"INSERT INTO {REGRESSION_TABLE} SELECT * FROM {SNAPSHOT_TABLE} ORDER BY id")
    finally:
        execute("SET session_replication_role = DEFAULT")
    vacuum((REGRESSION_TABLE,))


def drop_snapshot() -> None:
    execute(f"DROP TABLE IF EXISTS {SNAPSHOT_TABLE}")
