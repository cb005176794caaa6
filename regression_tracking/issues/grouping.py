"""Sentry's issue lookup by fingerprint hash, with orphan logging.

``bulk_get_groups_from_fingerprints`` is a drop-in for upstream's newest contract: pairs of
(project id, already-hashed fingerprint) in, ``{(project_id, tuple(fingerprint)): Group}`` out.
``lookup_issue_groups`` is the same single statement without logging, for callers (the detector's
paths) that hold the RegressionGroups and log each orphan themselves, once.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import BooleanField, Expression, F, Model, Q, QuerySet
from django.db.models.sql.compiler import SQLCompiler

from regression_tracking.fingerprints import hash_fingerprint
from regression_tracking.models import BIGINT_MAX, BIGINT_MIN, Group, GroupHash, RegressionGroup
from regression_tracking.ops import metrics
from regression_tracking.orphans import IssueHash, OrphanReason

# The logger keeps the name operators route in their logging configuration.
logger = logging.getLogger("regression_tracking.services.lookup")

MISSING_ISSUE_GROUP_MESSAGE = "Missing issue group for regression issue"
MISSING_GROUP_MESSAGE = "No issue group for fingerprint"
NOT_FOUND_METRIC = "occurrence_ingest.grouphash.not_found"

_MD5_HEX = re.compile(r"[0-9a-f]{32}")

PairKey = tuple[int, tuple[str, ...]]
IssueKey = tuple[int, str]
# SQLite statements stay this many variables under the connection's limit (room for the rest).
_SQLITE_VARIABLE_HEADROOM = 16
M = TypeVar("M", bound=Model)


def _validated_pairs(
    project_fingerprint_pairs: Iterable[tuple[int, Sequence[str]]],
) -> list[PairKey]:
    """The pairs as result keys, checked before any query; raises naming the first bad pair."""
    pairs: list[PairKey] = []
    for pair in project_fingerprint_pairs:
        if isinstance(pair, str | bytes) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise TypeError(f"expected a (project_id, fingerprint) pair, got {pair!r}")
        project_id, fingerprint = pair
        if isinstance(project_id, bool) or not isinstance(project_id, int):
            raise TypeError(f"project id must be an int in pair {pair!r}")
        if isinstance(fingerprint, str | bytes) or not isinstance(fingerprint, Sequence):
            raise TypeError(
                f"fingerprint must be a list of hashes, not {type(fingerprint).__name__}, "
                f"in pair {pair!r}"
            )
        if not fingerprint:
            raise ValueError(f"fingerprint is empty in pair {pair!r}")
        for part in fingerprint:
            if not isinstance(part, str) or not _MD5_HEX.fullmatch(part):
                raise ValueError(
                    f"{part!r} is not a 32-character lowercase hex md5 in pair {pair!r}: pass "
                    "hash_fingerprint(fingerprint), not the raw fingerprint"
                )
        pairs.append((project_id, tuple(fingerprint)))
    return pairs


def _issue_keys(pairs: Iterable[PairKey]) -> list[IssueKey]:
    """Every (project id, hash) of the pairs, sorted; a project id beyond bigint names no row and
    is left out (it would not fit in the statement)."""
    return sorted(
        {
            (project_id, issue_hash)
            for project_id, fingerprint in pairs
            if BIGINT_MIN <= project_id <= BIGINT_MAX
            for issue_hash in fingerprint
        }
    )


class KeyIn(Expression):
    """``(project, hash) IN (SELECT * FROM unnest(%s::bigint[], %s::text[]))`` on PostgreSQL.

    The two arrays give a statement of constant shape, whatever the number of keys, that probes
    the ``(project_id, hash)`` index once per key. An OR of one ``project_id = p AND hash IN (…)``
    term per project, the shape before, was many times slower for thousands of keys over many
    projects (benchmarks.lookup measures the lookup). The two sides are expressions (columns, or
    ``IssueHash`` of a column), compiled by Django: no table or column name is spelled here.
    """

    output_field = BooleanField()
    conditional = True
    template = "(%(project)s, %(hash)s) IN (SELECT * FROM unnest(%%s::bigint[], %%s::text[]))"

    def __init__(
        self, project: Expression | F, issue_hash: Expression | F, keys: Sequence[IssueKey]
    ):
        super().__init__()
        # Any: F before resolve_expression, a compiled expression after.
        self.project: Any = project
        self.issue_hash: Any = issue_hash
        self.keys = keys

    def get_source_expressions(self) -> list[Any]:
        return [self.project, self.issue_hash]

    def set_source_expressions(self, exprs: Sequence[Any]) -> None:
        self.project, self.issue_hash = exprs

    def as_sql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any
    ) -> tuple[str, list[Any]]:
        project_sql, project_params = compiler.compile(self.project)
        hash_sql, hash_params = compiler.compile(self.issue_hash)
        sql = self.template % {"project": project_sql, "hash": hash_sql}
        arrays = [[p for p, _ in self.keys], [h for _, h in self.keys]]
        return sql, [*project_params, *hash_params, *arrays]


def _sqlite_variable_limit(connection: BaseDatabaseWrapper) -> int:
    """The most variables one SQLite statement of this connection may hold."""
    connection.ensure_connection()
    import sqlite3

    raw = connection.connection
    limit = int(raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    return max(2, limit - _SQLITE_VARIABLE_HEADROOM)


def _chunked_keys(keys: Sequence[IssueKey], variable_limit: int) -> Iterator[list[IssueKey]]:
    """The keys (sorted by project) in chunks whose distinct projects plus distinct hashes stay
    within ``variable_limit``."""
    chunk: list[IssueKey] = []
    projects: set[int] = set()
    hashes: set[str] = set()
    for key in keys:
        grows = (key[0] not in projects) + (key[1] not in hashes)
        if chunk and len(projects) + len(hashes) + grows > variable_limit:
            yield chunk
            chunk, projects, hashes = [], set(), set()
        chunk.append(key)
        projects.add(key[0])
        hashes.add(key[1])
    if chunk:
        yield chunk


def _rows_with_keys(
    queryset: QuerySet[M], keys: Sequence[IssueKey], issue_hash: Expression | F
) -> Iterator[M]:
    """The rows of ``queryset`` whose ``(project_id, issue_hash)`` is one of ``keys``.

    PostgreSQL: one statement for any number of keys (``KeyIn``). Other databases get
    ``project_id IN (…) AND hash IN (…)``, a superset of the keys whose extra rows the callers
    never look up; on SQLite in as many statements as its variable limit needs (a lookup of 130k
    pairs would otherwise raise "too many SQL variables" on a build with the default limit).
    """
    if not keys:
        return
    connection = connections[router.db_for_read(queryset.model)]
    if connection.vendor == "postgresql":
        # For a computed hash (a RegressionGroup's), the project filter has it computed only over
        # the rows of the keys' projects, found by the ``project_id`` index, not over the whole
        # table (benchmarks.detector_view measures it). A column
        # (GroupHash.hash) needs none: the (project_id, hash) index serves the keys.
        narrowed = queryset
        if not isinstance(issue_hash, F):
            narrowed = queryset.filter(project_id__in=sorted({p for p, _ in keys}))
        yield from narrowed.filter(KeyIn(F("project_id"), issue_hash, keys))
        return
    if connection.vendor == "sqlite":
        chunks: Iterable[list[IssueKey]] = _chunked_keys(keys, _sqlite_variable_limit(connection))
    else:
        chunks = [list(keys)]
    for chunk in chunks:
        condition = Q(project_id__in=sorted({p for p, _ in chunk}))
        yield from queryset.annotate(_issue_hash=issue_hash).filter(
            condition, _issue_hash__in=sorted({h for _, h in chunk})
        )


@dataclass(frozen=True, slots=True)
class IssueLookup:
    """The result of one lookup: the live groups, the pairs without one, and why."""

    groups: dict[PairKey, Group]
    # The pairs without a live group, in (project id, fingerprint) order.
    missing: list[PairKey]
    # The keys read that have a GroupHash whose group is NULL (a discarded issue).
    without_group: frozenset[IssueKey]

    def reason(self, pair: PairKey) -> OrphanReason:
        """Why a missing pair has no live group, from the GroupHashes the lookup read."""
        project_id, fingerprint = pair
        return OrphanReason.of(
            grouphash_exists=any((project_id, h) in self.without_group for h in fingerprint)
        )


def lookup_issue_groups(
    project_fingerprint_pairs: Iterable[tuple[int, Sequence[str]]],
) -> IssueLookup:
    """The live Group of each pair (first hash in list order that has one wins), in one statement
    on PostgreSQL; counts the missing pairs in ``occurrence_ingest.grouphash.not_found`` as
    upstream does, and logs nothing. Bad input raises before any query."""
    pairs = list(dict.fromkeys(_validated_pairs(project_fingerprint_pairs)))
    live: dict[IssueKey, Group] = {}
    without_group: set[IssueKey] = set()
    grouphashes = GroupHash.objects.select_related("group")
    for grouphash in _rows_with_keys(grouphashes, _issue_keys(pairs), F("hash")):
        assert grouphash.project_id is not None  # the condition names a project
        key = (grouphash.project_id, grouphash.hash)
        if grouphash.group is None:
            without_group.add(key)
        else:
            live[key] = grouphash.group

    groups: dict[PairKey, Group] = {}
    missing: list[PairKey] = []
    for pair in pairs:
        project_id, fingerprint = pair
        group = next((live[k] for h in fingerprint if (k := (project_id, h)) in live), None)
        if group is None:
            missing.append(pair)
        else:
            groups[pair] = group
    if missing:
        metrics.incr(NOT_FOUND_METRIC, amount=len(missing))
    return IssueLookup(groups, sorted(missing), frozenset(without_group))


def bulk_get_groups_from_fingerprints(
    project_fingerprint_pairs: Iterable[tuple[int, Sequence[str]]],
) -> dict[PairKey, Group]:
    """The live Group of each (project id, hashed fingerprint) pair; pairs without one are absent.

    For each pair the group of the first hash, in list order, whose GroupHash has a non-null group
    wins. One statement when every pair resolves; the missing pairs together cost one more (to find
    and log the RegressionGroups they orphan: a WARNING with their ids, else INFO) and are counted
    in ``occurrence_ingest.grouphash.not_found``. Bad input raises ``TypeError``/``ValueError``
    before any query.
    """
    lookup = lookup_issue_groups(project_fingerprint_pairs)
    if lookup.missing:
        _log_missing(lookup, _regression_ids_by_key(lookup.missing))
    return lookup.groups


def _regression_ids_by_key(missing: Sequence[PairKey]) -> dict[IssueKey, list[int]]:
    """The ids of the RegressionGroups whose issue key is one of the missing pairs' keys.

    The issue hash is computed only over the RegressionGroups of the missing pairs' projects (the
    ``project_id`` index narrows the scan first).
    """
    ids: defaultdict[IssueKey, list[int]] = defaultdict(list)
    queryset = RegressionGroup.objects.only("id", "project_id", "fingerprint")
    rows = _rows_with_keys(queryset, _issue_keys(missing), IssueHash(F("fingerprint")))
    for regression in rows:
        key = (regression.project_id, hash_fingerprint([regression.fingerprint])[0])
        ids[key].append(regression.id)
    return ids


def _log_missing(lookup: IssueLookup, regression_ids: Mapping[IssueKey, Sequence[int]]) -> None:
    """One record per missing pair: a WARNING when it orphans RegressionGroups, else INFO."""
    for pair in lookup.missing:
        project_id, fingerprint = pair
        ids = sorted({i for h in fingerprint for i in regression_ids.get((project_id, h), ())})
        extra: dict[str, object] = {
            "project_id": project_id,
            "fingerprint": list(fingerprint),
            "reason": str(lookup.reason(pair)),
        }
        if ids:
            logger.warning(
                MISSING_ISSUE_GROUP_MESSAGE, extra={**extra, "regression_group_ids": ids}
            )
        else:
            logger.info(MISSING_GROUP_MESSAGE, extra=extra)


def get_group_from_fingerprint(project_id: int, fingerprint: Sequence[str]) -> Group | None:
    """The live Group of one (project id, hashed fingerprint), or None (as upstream)."""
    groups = bulk_get_groups_from_fingerprints([(project_id, fingerprint)])
    return groups.get((project_id, tuple(fingerprint)))


def regression_issue_key(regression: RegressionGroup) -> PairKey:
    """The lookup pair of a RegressionGroup's issue: (project id, (md5 of its fingerprint,))."""
    return regression.project_id, tuple(hash_fingerprint([regression.fingerprint]))


@dataclass(frozen=True, slots=True)
class RegressionIssues:
    """Each RegressionGroup's live Group (or None), and the reason of each one without."""

    groups: dict[int, Group | None]
    orphan_reasons: dict[int, OrphanReason]


def lookup_regression_issues(
    regressions: Iterable[RegressionGroup], *, log_missing: bool = False
) -> RegressionIssues:
    """The issues of RegressionGroups the caller holds, in one lookup statement.

    With ``log_missing``, one "Missing issue group for regression issue" WARNING per orphaned
    issue key, naming the given RegressionGroups that have it; nothing is queried again.
    Without, nothing is logged (the detector logs what it decides instead).
    """
    keys = {regression.id: regression_issue_key(regression) for regression in regressions}
    lookup = lookup_issue_groups(keys.values())
    groups = {regression_id: lookup.groups.get(key) for regression_id, key in keys.items()}
    if log_missing and lookup.missing:
        ids_by_key: defaultdict[IssueKey, list[int]] = defaultdict(list)
        for regression_id, (project_id, fingerprint) in keys.items():
            ids_by_key[(project_id, fingerprint[0])].append(regression_id)
        _log_missing(lookup, ids_by_key)
    reasons = {
        regression_id: lookup.reason(keys[regression_id])
        for regression_id, group in groups.items()
        if group is None
    }
    return RegressionIssues(groups, reasons)


def get_issue_groups_for_regressions(
    regressions: Iterable[RegressionGroup],
) -> dict[int, Group | None]:
    """Each RegressionGroup's live Group or None, by RegressionGroup id, in one statement; the
    missing ones logged (``lookup_regression_issues`` with ``log_missing``)."""
    return lookup_regression_issues(regressions, log_missing=True).groups
