"""D: ``bulk_get_groups_from_fingerprints`` against a per-pair loop and upstream's UNION shape."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import connection

from benchmarks.dataset import FATE_MODULUS, GROUPHASH_WITHOUT_GROUP_FATE, MISSING_GROUPHASH_FATE
from benchmarks.dataset import execute as execute_sql
from regression_tracking.models import Group, GroupHash
from regression_tracking.services import bulk_get_groups_from_fingerprints

Pair = tuple[int, list[str]]
# (project_id, first hash) -> the Group's id: what every shape must agree on.
Resolved = dict[tuple[int, str], int]


@dataclass(frozen=True, slots=True)
class LookupRun:
    seconds: float
    statements: int
    resolved: Resolved


def lookup_pairs(*, pairs: int, projects: int) -> list[Pair]:
    """``pairs`` (project, [hash]) pairs with a live issue, the same number in every project."""
    per_project = max(1, pairs // projects)
    rows = execute_sql(
        "SELECT project_id, md5(fingerprint) FROM ("
        " SELECT project_id, fingerprint,"
        " row_number() OVER (PARTITION BY project_id ORDER BY id) AS position"
        " FROM sentry_regressiongroup WHERE id %% %s NOT IN (%s, %s)) live"
        " WHERE position <= %s ORDER BY project_id, position LIMIT %s",
        [FATE_MODULUS, MISSING_GROUPHASH_FATE, GROUPHASH_WITHOUT_GROUP_FATE, per_project, pairs],
    )
    return [(project_id, [issue_hash]) for project_id, issue_hash in rows]


def with_bulk_lookup(pairs: Sequence[Pair]) -> Resolved:
    """The service under test: one statement."""
    groups = bulk_get_groups_from_fingerprints(pairs)
    return {(p, fingerprint[0]): groups[(p, tuple(fingerprint))].id for p, fingerprint in pairs}


def with_per_pair_loop(pairs: Sequence[Pair]) -> Resolved:
    """The naive shape: one query per pair."""
    resolved: Resolved = {}
    for project_id, fingerprint in pairs:
        grouphashes = GroupHash.objects.select_related("group").filter(
            project_id=project_id, hash__in=fingerprint, group__isnull=False
        )
        by_hash = {grouphash.hash: grouphash.group for grouphash in grouphashes}
        group = next((by_hash[h] for h in fingerprint if h in by_hash), None)
        if group is not None:
            resolved[(project_id, fingerprint[0])] = group.id
    return resolved


def with_upstream_union(pairs: Sequence[Pair]) -> Resolved:
    """Upstream's shape: a UNION of one ``project = p AND hash IN (…)`` query per project.

    Upstream chains ``query = query.union(…)`` once per project; Django nests each UNION in the
    previous one and fails with RecursionError at 1,000 projects, so this builds the same UNION
    flat, in one ``union(*queries)``.
    """
    first_hashes: defaultdict[int, list[str]] = defaultdict(list)
    for project_id, fingerprint in pairs:
        first_hashes[project_id].append(fingerprint[0])
    queries = [
        GroupHash.objects.filter(project=project_id, hash__in=hashes).select_related("group")
        for project_id, hashes in first_hashes.items()
    ]
    union = queries[0].union(*queries[1:])
    groups: dict[tuple[int, str], Group] = {
        (grouphash.project_id, grouphash.hash): grouphash.group
        for grouphash in union
        if grouphash.group is not None and grouphash.project_id is not None
    }
    return {key: group.id for key, group in groups.items()}


SHAPES: dict[str, Callable[[Sequence[Pair]], Resolved]] = {
    "bulk": with_bulk_lookup,
    "per_pair_loop": with_per_pair_loop,
    "upstream_union": with_upstream_union,
}


@contextmanager
def counting_statements() -> Iterator[list[int]]:
    """Count the statements the default connection runs (cheaper than capturing their SQL)."""
    count = [0]

    def counter(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        count[0] += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(counter):
        yield count


def time_shape(shape: Callable[[Sequence[Pair]], Resolved], pairs: Sequence[Pair]) -> LookupRun:
    with counting_statements() as count:
        started = time.perf_counter()
        resolved = shape(pairs)
        seconds = time.perf_counter() - started
    return LookupRun(seconds=seconds, statements=count[0], resolved=resolved)
