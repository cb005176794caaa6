"""Sentry's issue lookup by fingerprint hash, with orphan logging.

``bulk_get_groups_from_fingerprints`` is a drop-in for upstream's newest contract: pairs of
(project id, already-hashed fingerprint) in, ``{(project_id, tuple(fingerprint)): Group}`` out.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

from django.db import connections, router
from django.db.models import BooleanField, Model, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.functions import MD5

from regression_tracking import metrics
from regression_tracking.fingerprints import hash_fingerprint
from regression_tracking.models import Group, GroupHash, RegressionGroup
from regression_tracking.services.orphans import OrphanReason, sql_names

logger = logging.getLogger(__name__)

MISSING_ISSUE_GROUP_MESSAGE = "Missing issue group for regression issue"
MISSING_GROUP_MESSAGE = "No issue group for fingerprint"
NOT_FOUND_METRIC = "occurrence_ingest.grouphash.not_found"

_MD5_HEX = re.compile(r"[0-9a-f]{32}")

PairKey = tuple[int, tuple[str, ...]]
# The ids PostgreSQL's bigint (and SQLite's integer) can hold.
_BIGINT_MIN, _BIGINT_MAX = -(2**63), 2**63 - 1
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


def _hashes_by_project(pairs: Iterable[PairKey]) -> dict[int, set[str]]:
    """Every hash of the pairs, by project; a project id beyond bigint names no row and is left
    out (it would not fit in the statement)."""
    hashes_by_project: defaultdict[int, set[str]] = defaultdict(set)
    for project_id, fingerprint in pairs:
        if _BIGINT_MIN <= project_id <= _BIGINT_MAX:
            hashes_by_project[project_id].update(fingerprint)
    return hashes_by_project


def _filter_by_keys(
    queryset: QuerySet[M], hashes_by_project: Mapping[int, Iterable[str]], hash_field: str
) -> QuerySet[M]:
    """The GroupHashes (or RegressionGroups annotated with their issue hash as ``hash_field``)
    whose ``(project_id, hash)`` is one of the keys, in one statement (none for no keys).

    On PostgreSQL the keys go as two arrays joined with ``unnest``: a statement of constant shape
    that probes the ``(project_id, hash)`` index once per key. An OR of one ``project_id = p AND
    hash IN (…)`` term per project, the shape before, took 6 s for 10,000 keys over 1,000
    projects among 1.9M GroupHashes, against 0.2 s for the arrays; SQLite refuses it beyond 1,000
    projects (its expression tree is too deep). Other databases get ``project_id IN (…) AND hash
    IN (…)``: a superset of the keys, whose extra rows the callers never look up.
    """
    if not hashes_by_project:
        return queryset.none()
    connection = connections[router.db_for_read(queryset.model)]
    if connection.vendor != "postgresql":
        every_hash = sorted(set().union(*hashes_by_project.values()))
        return queryset.filter(
            project_id__in=sorted(hashes_by_project), **{f"{hash_field}__in": every_hash}
        )
    names = sql_names(connection)
    if queryset.model is GroupHash:
        key = "{gh_table}.{gh_project}, {gh_table}.{gh_hash}".format(**names)
    else:
        # The annotation is not a column: state the md5 again.
        key = "{rg_table}.{rg_project}, MD5({rg_table}.{rg_fingerprint})".format(**names)
    keys = sorted((p, h) for p, hashes in hashes_by_project.items() for h in set(hashes))
    in_keys = RawSQL(
        f"({key}) IN (SELECT * FROM unnest(%s::bigint[], %s::text[]))",
        ([p for p, _ in keys], [h for _, h in keys]),
        output_field=BooleanField(),
    )
    return queryset.filter(in_keys)


def bulk_get_groups_from_fingerprints(
    project_fingerprint_pairs: Iterable[tuple[int, Sequence[str]]],
) -> dict[PairKey, Group]:
    """The live Group of each (project id, hashed fingerprint) pair; pairs without one are absent.

    For each pair the group of the first hash, in list order, whose GroupHash has a non-null group
    wins. One statement when every pair resolves; the missing pairs together cost one more (to find
    and log the RegressionGroups they orphan) and are counted in ``occurrence_ingest.grouphash.
    not_found``. Bad input raises ``TypeError``/``ValueError`` before any query.
    """
    pairs = list(dict.fromkeys(_validated_pairs(project_fingerprint_pairs)))
    if not pairs:
        return {}

    hashes_by_project = _hashes_by_project(pairs)
    live: dict[tuple[int, str], Group] = {}
    without_group: set[tuple[int, str]] = set()
    grouphashes = _filter_by_keys(GroupHash.objects.all(), hashes_by_project, "hash")
    for grouphash in grouphashes.select_related("group"):
        assert grouphash.project_id is not None  # the condition names a project
        key = (grouphash.project_id, grouphash.hash)
        if grouphash.group is None:
            without_group.add(key)
        else:
            live[key] = grouphash.group

    result: dict[PairKey, Group] = {}
    missing: list[PairKey] = []
    for pair in pairs:
        project_id, fingerprint = pair
        group = next((live[k] for h in fingerprint if (k := (project_id, h)) in live), None)
        if group is None:
            missing.append(pair)
        else:
            result[pair] = group

    if missing:
        metrics.incr(NOT_FOUND_METRIC, amount=len(missing))
        _log_missing(sorted(missing), without_group)
    return result


def _log_missing(missing: list[PairKey], without_group: set[tuple[int, str]]) -> None:
    """One record per missing pair: a WARNING when it orphans RegressionGroups, else INFO."""
    hashes_by_project = _hashes_by_project(missing)
    regression_ids: defaultdict[tuple[int, str], list[int]] = defaultdict(list)
    regressions = RegressionGroup.objects.annotate(issue_hash=MD5("fingerprint"))
    rows = _filter_by_keys(regressions, hashes_by_project, "issue_hash").values_list(
        "project_id", "issue_hash", "id"
    )
    for project_id, issue_hash, regression_id in rows:
        regression_ids[(project_id, issue_hash)].append(regression_id)

    for project_id, fingerprint in missing:
        keys = [(project_id, h) for h in fingerprint]
        reason = (
            OrphanReason.GROUPHASH_WITHOUT_GROUP
            if any(k in without_group for k in keys)
            else OrphanReason.MISSING_GROUPHASH
        )
        ids = sorted({i for k in keys for i in regression_ids.get(k, ())})
        extra: dict[str, object] = {
            "project_id": project_id,
            "fingerprint": list(fingerprint),
            "reason": str(reason),
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


def get_issue_groups_for_regressions(
    regressions: Iterable[RegressionGroup],
) -> dict[int, Group | None]:
    """Each RegressionGroup's live Group or None, by RegressionGroup id, in one lookup.

    The detector's view: the missing ones are logged as "Missing issue group for regression issue".
    """
    keys = {
        regression.id: (regression.project_id, tuple(hash_fingerprint([regression.fingerprint])))
        for regression in regressions
    }
    groups = bulk_get_groups_from_fingerprints(keys.values())
    return {regression_id: groups.get(key) for regression_id, key in keys.items()}
