"""Orphan detection: RegressionGroups whose issue key resolves to no live Group.

A RegressionGroup's issue key is ``(project_id, md5(fingerprint))``; its *live group* is a GroupHash
with that key and a non-null group. The SQL here is written once and shared by detection and by the
cleanup's write statements, so every statement that reads or changes orphans states the same
predicate. It runs unchanged on PostgreSQL (native ``md5``) and SQLite (Django registers ``MD5``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field

from regression_tracking.models import GroupHash, RegressionGroup, RegressionType

# DESIGN §3: the issue is created asynchronously, so an orphan younger than this may simply not
# have its issue yet. Nothing acts on it.
GRACE_PERIOD = timedelta(hours=24)


class OrphanReason(enum.StrEnum):
    # No GroupHash has the key: the issue was never created, or deleted with its hashes.
    MISSING_GROUPHASH = "missing_grouphash"
    # A GroupHash has the key but no group: the issue was discarded (tombstoned).
    GROUPHASH_WITHOUT_GROUP = "grouphash_without_group"


@dataclass(frozen=True, slots=True)
class Orphan:
    id: int
    project_id: int
    reason: OrphanReason
    active: bool
    # date_added is before the cutoff: the grace period is over.
    old_enough: bool


@dataclass(frozen=True, slots=True)
class OrphanScope:
    """Which RegressionGroups to examine; None means no restriction."""

    project_ids: tuple[int, ...] | None = None
    regression_type: RegressionType | None = None
    # Only ids strictly greater than this (resuming after a candidate id).
    after_id: int | None = None
    # Only these RegressionGroup ids (e.g. an admin selection).
    ids: tuple[int, ...] | None = None
    # (k, n): only projects with project_id % n == k, so n runs split the table without overlap.
    shard: tuple[int, int] | None = None


def sql_names(connection: BaseDatabaseWrapper) -> dict[str, str]:
    """Quoted table and column names for the orphan SQL, read from the models."""
    quote = connection.ops.quote_name
    names = {}
    for prefix, model, fields in (
        ("rg", RegressionGroup, ("id", "project", "fingerprint", "type", "active", "date_added")),
        ("gh", GroupHash, ("id", "project", "hash", "group")),
    ):
        names[f"{prefix}_table"] = quote(model._meta.db_table)
        for name in fields:
            field = model._meta.get_field(name)
            assert isinstance(field, Field)
            names[f"{prefix}_{name}"] = quote(field.column)
    return names


def orphan_predicate_sql(connection: BaseDatabaseWrapper, alias: str) -> str:
    """SQL that is true when the RegressionGroup row ``alias`` has no live group.

    ``NOT EXISTS`` (never ``NOT IN``) so PostgreSQL can run it as a (parallel) hash anti-join.
    """
    return (
        "NOT EXISTS (SELECT 1 FROM {gh_table} live"
        " WHERE live.{gh_project} = {alias}.{rg_project}"
        " AND live.{gh_hash} = MD5({alias}.{rg_fingerprint})"
        " AND live.{gh_group} IS NOT NULL)"
    ).format(alias=alias, **sql_names(connection))


def scope_sql(
    connection: BaseDatabaseWrapper, scope: OrphanScope, alias: str
) -> tuple[str, list[Any]]:
    """A WHERE condition (``TRUE`` when unrestricted) selecting the rows of ``scope``."""
    names = sql_names(connection)
    conditions: list[str] = []
    params: list[Any] = []
    for values, column in ((scope.project_ids, "rg_project"), (scope.ids, "rg_id")):
        if values is None:
            continue
        if not values:
            return "1 = 0", []
        conditions.append(f"{alias}.{names[column]} IN ({', '.join(['%s'] * len(values))})")
        params.extend(values)
    if scope.regression_type is not None:
        conditions.append(f"{alias}.{names['rg_type']} = %s")
        params.append(int(scope.regression_type))
    if scope.after_id is not None:
        conditions.append(f"{alias}.{names['rg_id']} > %s")
        params.append(scope.after_id)
    if scope.shard is not None:
        index, count = scope.shard
        conditions.append(f"{alias}.{names['rg_project']} %% %s = %s")
        params.extend([count, index])
    return (" AND ".join(conditions) or "1 = 1"), params


def cutoff_param(connection: BaseDatabaseWrapper, cutoff: datetime) -> Any:
    """``cutoff`` as the database compares it with ``date_added`` (naive UTC text on SQLite)."""
    return connection.ops.adapt_datetimefield_value(cutoff)


def select_orphans(
    *, cutoff: datetime, scope: OrphanScope | None = None, using: str = DEFAULT_DB_ALIAS
) -> list[Orphan]:
    """Every orphan in scope, in id order, with its reason and whether it is older than ``cutoff``.

    One set-based statement: the anti-join on live GroupHashes finds the orphans, and a left join
    on the (few) GroupHashes without a group gives the reason; ``(project_id, hash)`` is unique, so
    that join adds no rows. Rows come back client-side (a server-side cursor gets no parallel plan).
    """
    connection = connections[using]
    names = sql_names(connection)
    where, params = scope_sql(connection, scope or OrphanScope(), "rg")
    sql = (
        "SELECT rg.{rg_id}, rg.{rg_project}, rg.{rg_active}, rg.{rg_date_added} < %s,"
        " dead.{gh_id} IS NOT NULL"
        " FROM {rg_table} rg"
        " LEFT JOIN {gh_table} dead ON dead.{gh_project} = rg.{rg_project}"
        " AND dead.{gh_hash} = MD5(rg.{rg_fingerprint}) AND dead.{gh_group} IS NULL"
        " WHERE {where} AND {orphan}"
        " ORDER BY rg.{rg_id}"
    ).format(where=where, orphan=orphan_predicate_sql(connection, "rg"), **names)
    with connection.cursor() as cursor:
        cursor.execute(sql, [cutoff_param(connection, cutoff), *params])
        rows = cursor.fetchall()
    missing, without_group = OrphanReason.MISSING_GROUPHASH, OrphanReason.GROUPHASH_WITHOUT_GROUP
    return [
        Orphan(
            id=row_id,
            project_id=project_id,
            reason=without_group if has_dead_hash else missing,
            active=bool(active),
            old_enough=bool(old_enough),
        )
        for row_id, project_id, active, old_enough, has_dead_hash in rows
    ]


def count_in_scope(*, scope: OrphanScope | None = None, using: str = DEFAULT_DB_ALIAS) -> int:
    """How many RegressionGroups the scope covers, orphaned or not."""
    connection = connections[using]
    where, params = scope_sql(connection, scope or OrphanScope(), "rg")
    sql = "SELECT COUNT(*) FROM {rg_table} rg WHERE {where}".format(
        where=where, **sql_names(connection)
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        (count,) = cursor.fetchone()
    return int(count)
