"""Orphan detection: which RegressionGroups in scope have no live group, in one pass.

Everything here is built from ``regression_tracking.orphans``: the issue key (``IssueHash``) and
what makes a GroupHash live (``is_live_grouphash``). Detection (``detect_orphans``) is one
statement per large id range, aggregated in the database: one left join of the rows on GroupHash
by the issue key gives each row's liveness and an orphan's reason together, and the statement
returns the scanned count, the orphans by reason, the too recent ones and the eligible ids, so the
table is read once and no row becomes a Python object. Asked for a breakdown (the admin's
overview), the same census counts the orphans by reason, type, age and active, and by project,
instead of collecting the ids.
"""

from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any, NamedTuple

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import (
    BooleanField,
    Case,
    ExpressionWrapper,
    F,
    Func,
    IntegerField,
    Max,
    Min,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.functions import Mod

from regression_tracking.models import GroupHash, RegressionGroup, RegressionType
from regression_tracking.orphans import (
    IssueHash,
    OrphanReason,
    is_live_grouphash,
)

# Detection reads the table in id ranges this wide, one statement each (a few large
# ranges, never thousands of small ones). Each range's hash join builds its GroupHash hash table
# again, so the ranges are as wide as the client can take: only the eligible ids come back, packed
# at 8 bytes each, so a range of 4M ids (≤ 400k eligible at the usual 10% orphans) costs the client
# ~3 MB while it arrives. Up to 4M rows detection is one statement.
DETECTION_RANGE_IDS = 4_000_000


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


class BreakdownKey(NamedTuple):
    """What a census with a breakdown counts orphans by."""

    reason: OrphanReason
    type: RegressionType
    # How many of the census's cutoff and age edges the orphan's date_added is before: 0 for the
    # too recent ones, len(edges) + 1 for those older than the oldest edge.
    age_bucket: int
    active: bool


@dataclass(slots=True)
class OrphanBreakdown:
    """A census's orphans counted two ways; only the non-zero counts are present."""

    counts: dict[BreakdownKey, int] = field(default_factory=dict)
    # Orphans by project id.
    by_project: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class Detection:
    """What one pass over the scope found."""

    # Rows examined in scope, orphaned or not.
    scanned: int = 0
    by_reason: dict[OrphanReason, int] = field(
        default_factory=lambda: dict.fromkeys(OrphanReason, 0)
    )
    # Orphans inside the grace period.
    too_recent: int = 0
    # Ids of the orphans the action applies to (old enough; active too, for deactivate), in id
    # order, 8 bytes each. Not collected by a census with a breakdown.
    eligible_ids: array[int] = field(default_factory=lambda: array("q"))
    # The orphans by reason, type, age and active, and by project, when asked for.
    breakdown: OrphanBreakdown | None = None

    @property
    def orphaned(self) -> int:
        return sum(self.by_reason.values())


class InShard(Func):
    """``project_id % n = k`` as a boolean expression.

    On PostgreSQL a function call, not ``=``: an equality on an expression is estimated at 0.5% of
    the rows, so with 2 shards (half the rows each) PostgreSQL probed the GroupHash index row by
    row, slower than the hash join; a boolean function gets the neutral estimate of a third.
    """

    function = "int8eq"
    output_field = BooleanField()

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(
            compiler, connection, template="(%(expressions)s)", arg_joiner=" = ", **extra
        )


def in_shard(project: str, shard: tuple[int, int]) -> InShard:
    index, count = (int(part) for part in shard)
    return InShard(Mod(F(project), Value(count)), Value(index))


def scoped(queryset: QuerySet[RegressionGroup], scope: OrphanScope) -> QuerySet[RegressionGroup]:
    """The rows of ``queryset`` that ``scope`` covers."""
    if scope.project_ids is not None:
        queryset = queryset.filter(project_id__in=scope.project_ids)
    if scope.ids is not None:
        queryset = queryset.filter(id__in=scope.ids)
    if scope.regression_type is not None:
        queryset = queryset.filter(type=int(scope.regression_type))
    if scope.after_id is not None:
        queryset = queryset.filter(id__gt=scope.after_id)
    if scope.shard is not None:
        queryset = queryset.filter(in_shard("project_id", scope.shard))
    return queryset


def _compiled(queryset: QuerySet[Any], using: str) -> tuple[str, tuple[Any, ...]]:
    sql, params = queryset.query.get_compiler(using=using).as_sql()
    return sql, tuple(params)


def _age_bucket(old_enough: Q, edges: tuple[datetime, ...]) -> Case:
    """How many of the cutoff (``old_enough``) and ``edges`` (oldest last) date_added is before."""
    whens = [When(~old_enough, then=Value(0))]
    whens += [
        When(date_added__gte=edge, then=Value(bucket)) for bucket, edge in enumerate(edges, 1)
    ]
    return Case(*whens, default=Value(len(edges) + 1), output_field=IntegerField())


def _census(
    *,
    scope: OrphanScope,
    cutoff: datetime,
    active_only: bool,
    id_range: tuple[int, int] | None,
    using: str,
    breakdown: tuple[datetime, ...] | None = None,
) -> tuple[str, tuple[Any, ...], str, tuple[Any, ...]]:
    """The census of one id range: the scanned count's subquery and the orphans' FROM clause.

    One left join of the range's RegressionGroups on GroupHash by the issue key (``IssueHash``):
    ``(project_id, hash)`` is unique, so each row meets at most one GroupHash, and that row says
    everything: none (an orphan, ``missing_grouphash``), one that is not live
    (``is_live_grouphash()`` false: an orphan, ``grouphash_without_group``) or a live one (not an
    orphan). This is ``is_orphan()`` and ``orphan_reason()`` read off one join. Every piece is
    compiled from a queryset; only the join condition and the aggregates around it are written
    here, over the aliases the querysets name. With ``breakdown`` (age edges) the rows also carry
    their type, active and age bucket; the join is the same.
    """
    regressions = scoped(RegressionGroup.objects.using(using), scope).order_by()
    if id_range is not None:
        regressions = regressions.filter(id__gte=id_range[0], id__lte=id_range[1])
    old_enough = Q(date_added__lt=cutoff)
    eligible_if_orphan = old_enough & Q(active=True) if active_only else old_enough
    scanned_sql, scanned_params = _compiled(regressions.values("pk"), using)
    columns: dict[str, Any] = {
        "census_id": F("id"),
        "census_project_id": F("project_id"),
        "census_hash": IssueHash(F("fingerprint")),
        "census_old_enough": ExpressionWrapper(old_enough, output_field=BooleanField()),
        "census_eligible": ExpressionWrapper(eligible_if_orphan, output_field=BooleanField()),
    }
    if breakdown is not None:
        columns |= {
            "census_type": F("type"),
            "census_active": F("active"),
            "census_age_bucket": _age_bucket(old_enough, breakdown),
        }
    regressions_sql, regressions_params = _compiled(regressions.values(**columns), using)
    grouphashes = GroupHash.objects.using(using).order_by()
    if scope.shard is not None:
        # A shard's rows only ever match GroupHashes of the shard's projects: saying so lets the
        # join hash only those.
        grouphashes = grouphashes.filter(in_shard("project_id", scope.shard))
    grouphashes_sql, grouphashes_params = _compiled(
        grouphashes.values(
            census_project_id=F("project_id"),
            census_hash=F("hash"),
            census_live=ExpressionWrapper(is_live_grouphash(), output_field=BooleanField()),
        ),
        using,
    )
    from_sql = (
        f"FROM ({regressions_sql}) regression LEFT JOIN ({grouphashes_sql}) grouphash"
        " ON grouphash.census_project_id = regression.census_project_id"
        " AND grouphash.census_hash = regression.census_hash"
        # No GroupHash, or one that is not live: the orphans.
        " WHERE grouphash.census_live IS NOT TRUE"
    )
    return (
        f"(SELECT count(*) FROM ({scanned_sql}) scanned)",
        scanned_params,
        from_sql,
        regressions_params + grouphashes_params,
    )


# One range's census on PostgreSQL, aggregated in the database. The eligible ids come as bytea of
# 8-byte big-endian integers in id order (one per chunk, below): 100k ids are 0.8 MB on the wire
# and in the client, against 3.6 MB as the list of ints an ``array_agg`` arrives as.
#
# One left join rather than an anti-join followed by a second join for the reason: the second join
# cost an index probe or a second hash per orphan (benchmarks.shapes and benchmarks.run measure
# detection against the one-statement floor). Only the orphans pass the WHERE and reach the
# aggregate, so the join stays a Parallel Hash Left Join; the scanned count is a parallel count
# inside the same statement.
#
# The eligible ids come in one row per CENSUS_CHUNK_IDS ids of the range (each with its counts),
# after one row that is always there (the LEFT JOIN on a one-row relation) even when no row is an
# orphan, so the scanned count always arrives. In one row, libpq held the whole message in its
# input buffer beside its result while Python copied it: three copies of the ids at the peak, 24
# bytes per eligible orphan above the baseline at 1M and 3M rows; in chunks, the result and the
# array the rows are copied into (sized from the total in every row) are the only two.
_POSTGRESQL_CENSUS = (
    "SELECT {scanned}, chunk.missing, chunk.without_group, chunk.too_recent,"
    " (sum(chunk.eligible) OVER ())::bigint, chunk.packed_ids"
    " FROM (SELECT 1) one LEFT JOIN (SELECT regression.census_id / {chunk} AS chunk_number,"
    " count(*) FILTER (WHERE grouphash.census_hash IS NULL) AS missing,"
    " count(*) FILTER (WHERE grouphash.census_hash IS NOT NULL) AS without_group,"
    " count(*) FILTER (WHERE NOT regression.census_old_enough) AS too_recent,"
    " count(*) FILTER (WHERE regression.census_eligible) AS eligible,"
    " string_agg(int8send(regression.census_id), ''::bytea ORDER BY regression.census_id)"
    " FILTER (WHERE regression.census_eligible) AS packed_ids"
    " {from_sql} GROUP BY 1) chunk ON true ORDER BY chunk.chunk_number"
)
# Ids per row of the census: 65,536 ids hold ~6,500 eligible ones at 10% orphans (52 kB a row).
CENSUS_CHUNK_IDS = 65_536
# The census with a breakdown, on every database: the same join, its orphans counted by the
# breakdown's keys and by project instead of their ids collected. The LEFT JOIN on a one-row
# relation brings the scanned count even when no row is an orphan.
_BREAKDOWN_CENSUS = (
    "SELECT {scanned}, orphans.* FROM (SELECT 1) one LEFT JOIN (SELECT"
    " regression.census_project_id, regression.census_type,"
    " grouphash.census_hash IS NOT NULL, regression.census_age_bucket, regression.census_active,"
    " count(*) {from_sql} GROUP BY {group_by}) orphans ON true"
)
# On PostgreSQL two grouping sets: a row per project with orphans and one per key, never one
# per combination of the two (the other set's columns are NULL).
_POSTGRESQL_BREAKDOWN_GROUPS = "GROUPING SETS ((1), (2, 3, 4, 5))"
# SQLite has no grouping sets: a row per combination.
_BREAKDOWN_GROUPS = "1, 2, 3, 4, 5"
# Elsewhere (SQLite: tests and small installs) the count, then a row per orphan in id order.
_ROW_CENSUS = (
    "SELECT regression.census_id, grouphash.census_hash IS NOT NULL,"
    " regression.census_old_enough, regression.census_eligible "
)


def _id_ranges(scope: OrphanScope, using: str) -> list[tuple[int, int]]:
    """Id ranges of at most DETECTION_RANGE_IDS rows each that cover the scope, in id order.

    Sized by the rows present, not by the id span: a few rows spread up to 2^63 - 1 are one range.
    When the span is wider than a range, each next range starts at the row DETECTION_RANGE_IDS
    further on in the primary key's index, so the walk reads the index once.
    """
    bounds = scoped(RegressionGroup.objects.using(using), OrphanScope(after_id=scope.after_id))
    if scope.ids is not None:
        bounds = bounds.filter(id__in=scope.ids)
    low_high = bounds.order_by().aggregate(low=Min("id"), high=Max("id"))
    low, high = low_high["low"], low_high["high"]
    if low is None or high is None:
        return []
    ranges: list[tuple[int, int]] = []
    start = low
    while high - start >= DETECTION_RANGE_IDS:
        following = list(
            bounds.filter(id__gte=start)
            .order_by("id")
            .values_list("id", flat=True)[DETECTION_RANGE_IDS : DETECTION_RANGE_IDS + 1]
        )
        if not following:
            break
        ranges.append((start, following[0] - 1))
        start = following[0]
    ranges.append((start, high))
    return ranges


def detect_orphans(
    *,
    cutoff: datetime,
    scope: OrphanScope | None = None,
    active_only: bool = False,
    breakdown: tuple[datetime, ...] | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> Detection:
    """Scanned rows, orphans by reason, too recent ones and the eligible ids, in one pass.

    Eligible: orphans added before ``cutoff`` (and active, with ``active_only``). One statement per
    DETECTION_RANGE_IDS rows (one up to that many rows), plus the range bounds from the primary
    key's index. Rows come back client-side: a server-side cursor gets no parallel plan.

    With ``breakdown``, age edges before ``cutoff``, oldest last (``()`` for none), the census
    also fills ``Detection.breakdown`` (an orphan's age bucket is how many of ``cutoff`` and the
    edges its date_added is before) and collects no ids: a census for counting, the same
    statements otherwise.
    """
    scope = scope or OrphanScope()
    if breakdown is not None:
        breakdown = tuple(breakdown)
        if any(later <= earlier for later, earlier in pairwise((cutoff, *breakdown))):
            raise ValueError("age edges must come before the cutoff, oldest last")
    detection = Detection(breakdown=None if breakdown is None else OrphanBreakdown())
    if scope.project_ids == () or scope.ids == ():
        return detection
    connection = connections[using]
    with transaction.atomic(using=using), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # JIT compilation costs a noticeable share of the census at 1M rows (its cost
            # estimate crosses jit_optimize_above_cost) and saves nothing (benchmarks.run).
            cursor.execute("SELECT set_config('jit', 'off', true)")
            # Only the orphans leave the workers, but PostgreSQL cannot estimate how few (the join
            # is on an md5 expression): at its guess of half the table it runs the whole join in
            # one process, about twice as slow as in parallel (benchmarks.shapes, the shape with
            # as many group-less GroupHashes as live ones). Free tuple transfer keeps it parallel.
            cursor.execute("SELECT set_config('parallel_tuple_cost', '0', true)")
        for id_range in _id_ranges(scope, using):
            scanned_sql, scanned_params, from_sql, params = _census(
                scope=scope,
                cutoff=cutoff,
                active_only=active_only,
                id_range=id_range,
                using=using,
                breakdown=breakdown,
            )
            if breakdown is not None:
                postgresql = connection.vendor == "postgresql"
                sql = _BREAKDOWN_CENSUS.format(
                    scanned=scanned_sql,
                    from_sql=from_sql,
                    group_by=_POSTGRESQL_BREAKDOWN_GROUPS if postgresql else _BREAKDOWN_GROUPS,
                )
                cursor.execute(sql, scanned_params + params)
                _add_breakdown(detection, cursor)
            elif connection.vendor == "postgresql":
                sql = _POSTGRESQL_CENSUS.format(
                    scanned=scanned_sql, chunk=CENSUS_CHUNK_IDS, from_sql=from_sql
                )
                with _binary_cursor(connection) as census:
                    census.execute(_bound(connection, sql, scanned_params + params))
                    _add_chunks(detection, census)
            else:
                cursor.execute(f"SELECT {scanned_sql}", scanned_params)
                detection.scanned += cursor.fetchone()[0]
                cursor.execute(f"{_ROW_CENSUS}{from_sql} ORDER BY regression.census_id", params)
                _add_rows(detection, cursor)
    return detection


def _bound(connection: Any, sql: str, params: tuple[Any, ...]) -> str:
    """``sql`` with its parameters bound client-side, as Django's PostgreSQL cursors bind them."""
    bound: str = connection.ops.compose_sql(sql, params)
    return bound


def _binary_cursor(connection: Any) -> Any:
    """A cursor whose results arrive in binary, wrapped by Django like its own cursors.

    Django's cursors take text results: the packed ids would arrive as hex, twice their size, and
    be unescaped into a third copy; in binary a bytea arrives as its bytes, about half the peak
    memory above the command's baseline (benchmarks.shapes reports it per orphan). Statements for
    it are bound client-side (``compose_sql``), as Django's own cursors bind, so what PostgreSQL
    plans and what query logging shows are the same as through them; the wrapper is Django's, so
    execute wrappers see the statement too.
    """
    import psycopg

    raw = psycopg.Cursor(connection.connection)
    raw.format = psycopg.pq.Format.BINARY
    if connection.queries_logged:
        return connection.make_debug_cursor(raw)
    return connection.make_cursor(raw)


def _add_chunks(detection: Detection, rows: Any) -> None:
    """Add one range's census rows: the counts of each chunk, its ids copied into one array."""
    ids: array[int] | None = None
    position = 0
    for scanned, missing, without_group, too_recent, eligible, packed_ids in rows:
        if ids is None:
            detection.scanned += scanned
            ids = array("q", bytes(8 * (eligible or 0)))
        detection.by_reason[OrphanReason.MISSING_GROUPHASH] += missing or 0
        detection.by_reason[OrphanReason.GROUPHASH_WITHOUT_GROUP] += without_group or 0
        detection.too_recent += too_recent or 0
        if packed_ids:
            chunk = memoryview(packed_ids).cast("q")
            memoryview(ids)[position : position + len(chunk)] = chunk
            position += len(chunk)
    if not ids:
        return
    assert position == len(ids), (position, len(ids))
    if sys.byteorder == "little":
        ids.byteswap()
    if detection.eligible_ids:
        detection.eligible_ids.extend(ids)
    else:
        detection.eligible_ids = ids


def _add_breakdown(detection: Detection, rows: Any) -> None:
    """Add one range's census with a breakdown: a row per project and a row per key (both in
    one row without grouping sets); the scanned count is in every row."""
    breakdown = detection.breakdown
    assert breakdown is not None
    first = True
    for scanned, project_id, kind, grouphash_exists, age_bucket, active, count in rows:
        if first:
            detection.scanned += scanned
            first = False
        if not count:
            continue
        if project_id is not None:
            breakdown.by_project[project_id] = breakdown.by_project.get(project_id, 0) + count
        if kind is None:
            continue
        reason = OrphanReason.of(grouphash_exists=bool(grouphash_exists))
        key = BreakdownKey(reason, RegressionType(kind), age_bucket, bool(active))
        breakdown.counts[key] = breakdown.counts.get(key, 0) + count
        detection.by_reason[reason] += count
        if age_bucket == 0:
            detection.too_recent += count


def _add_rows(detection: Detection, cursor: Any) -> None:
    for row_id, grouphash_exists, old_enough, eligible in cursor:
        reason = OrphanReason.of(grouphash_exists=bool(grouphash_exists))
        detection.by_reason[reason] += 1
        if not old_enough:
            detection.too_recent += 1
        elif eligible:
            detection.eligible_ids.append(row_id)
