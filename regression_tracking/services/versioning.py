"""Regression versioning: each detected regression becomes the next RegressionGroup version.

Mirrors Sentry's ``get_regression_groups`` (``src/sentry/models/statistical_detectors.py``) and the
detector's ``get_regression_versions``, ``save_regressions_with_versions`` and
``_filter_escalating_groups`` (``src/sentry/statistical_detectors/detector.py``), with one change:
an active version whose issue is missing (an orphan, DESIGN §3) no longer blocks its fingerprint
forever. Once it is older than the grace period it is deactivated and the regression gets the next
version; upstream skips it on every run.
"""

from __future__ import annotations

import enum
import logging
import operator
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import reduce
from typing import Any

from django.db import connection, transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from regression_tracking.fingerprints import generate_fingerprint, hash_fingerprint
from regression_tracking.models import (
    Group,
    GroupHash,
    GroupStatus,
    GroupSubStatus,
    RegressionGroup,
    RegressionType,
)
from regression_tracking.services.lookup import bulk_get_groups_from_fingerprints
from regression_tracking.services.orphans import (
    GRACE_PERIOD,
    OrphanReason,
    cutoff_param,
    orphan_predicate_sql,
    sql_names,
)

logger = logging.getLogger(__name__)

# Upstream's chunk size: each batch is read, decided and written in one short transaction.
BATCH_SIZE = 100
# Upstream's RegressionDetector.buffer_period (both detectors): no new version of a fingerprint
# until this long after the previous version's breakpoint, so its issue does not flap.
BUFFER_PERIOD = timedelta(days=1)
ORPHAN_MIN_AGE = GRACE_PERIOD
# Issue states in which a new regression escalates the issue (upstream _filter_escalating_groups).
ESCALATING_ISSUE_STATES = frozenset(
    {
        (GroupStatus.UNRESOLVED, GroupSubStatus.ONGOING),
        (GroupStatus.IGNORED, GroupSubStatus.UNTIL_ESCALATING),
    }
)

ORPHAN_DEACTIVATED_MESSAGE = "Deactivated orphaned regression group"
ORPHAN_TOO_RECENT_MESSAGE = "Orphaned regression group too recent to deactivate"
VERSIONING_COMPLETED_MESSAGE = "regression_versioning.completed"

Key = tuple[int, str]


@dataclass(frozen=True, slots=True)
class DetectedRegression:
    """One breakpoint the detector found (upstream's ``BreakpointData``, typed)."""

    project_id: int
    # The endpoint's transaction or the function id (upstream's ``transaction`` key).
    name: str | int
    # When the regression started; timezone-aware.
    breakpoint: datetime
    # The p95 before and after the breakpoint (``aggregate_range_1`` / ``aggregate_range_2``).
    baseline: float
    regressed: float


class RegressionAction(enum.StrEnum):
    # Version 1, or the next version after an inactive one.
    CREATED = "created"
    # The active version's issue was resolved: it was closed and the next version created.
    CLOSED_RESOLVED = "closed_resolved"
    # The active version's issue is ongoing or ignored until escalating: closed, next version made.
    ESCALATED = "escalated"
    # The active version had no issue past the grace period: deactivated, next version created.
    DEACTIVATED_ORPHAN = "deactivated_orphan"
    SKIPPED = "skipped"


class SkipReason(enum.StrEnum):
    # The breakpoint is less than the buffer period after the previous version's breakpoint.
    WITHIN_BUFFER = "within_buffer"
    # The active version's issue is in a state a regression does not escalate (e.g. new, forever).
    ISSUE_NOT_ESCALATING = "issue_not_escalating"
    # The active version has no issue but is younger than the grace period.
    ORPHAN_TOO_RECENT = "orphan_too_recent"
    # The active version got its issue, or was closed, between the lookup and the write.
    CHANGED_CONCURRENTLY = "changed_concurrently"


@dataclass(frozen=True, slots=True)
class RegressionOutcome:
    """What happened to one detected regression."""

    project_id: int
    fingerprint: str
    action: RegressionAction
    # The version created, or (when skipped) the latest existing version.
    regression_group_id: int
    version: int
    # The previously active version this call closed or deactivated, if any (it is set on a skip
    # too when the version was closed but the buffer held back the next one, as upstream does).
    closed_regression_group_id: int | None = None
    skip_reason: SkipReason | None = None
    # Set when the active version was an orphan (deactivated or left alone).
    orphan_reason: OrphanReason | None = None


def _by_project_condition(pairs: Iterable[tuple[int, str]], field: str) -> Q:
    """``(project_id = p AND <field> IN (…)) OR …``, one term per project, in a stable order."""
    values_by_project: defaultdict[int, set[str]] = defaultdict(set)
    for project_id, value in pairs:
        values_by_project[project_id].add(value)
    return reduce(
        operator.or_,
        (
            Q(project_id=project_id, **{f"{field}__in": sorted(values)})
            for project_id, values in sorted(values_by_project.items())
        ),
    )


def get_regression_groups(
    regression_type: RegressionType,
    pairs: Sequence[tuple[int, str]],
    active: bool | None = None,
) -> list[RegressionGroup]:
    """The newest version of each (project id, fingerprint) of ``regression_type``, in one query.

    As upstream, ``active`` filters before the newest is picked: ``active=False`` gives the newest
    inactive version even when a newer active one exists. Upstream's DISTINCT ON is
    PostgreSQL-only; this correlated ``version = (newest version)`` subquery runs on any database,
    through the unique ``(type, project_id, fingerprint, version)`` index. No pairs: no rows, and
    no query (upstream's empty filter would match every row).
    """
    if not pairs:
        return []
    status = Q() if active is None else Q(active=active)
    newest_version = (
        RegressionGroup.objects.filter(
            status,
            type=OuterRef("type"),
            project_id=OuterRef("project_id"),
            fingerprint=OuterRef("fingerprint"),
        )
        .order_by("-version")
        .values("version")[:1]
    )
    return list(
        RegressionGroup.objects.filter(
            _by_project_condition(pairs, "fingerprint"), status, type=regression_type
        )
        .filter(version=Subquery(newest_version))
        .order_by("project_id", "fingerprint")
    )


def _deactivate(ids: Sequence[int], *, now: datetime, orphan_cutoff: datetime | None) -> set[int]:
    """Close the still-active rows of ``ids``; returns the ids this statement changed.

    With ``orphan_cutoff`` the statement re-states the orphan predicate and the age cutoff (the
    race rule, DESIGN §3): a GroupHash committed before it runs keeps its row active.
    """
    if not ids:
        return set()
    names = sql_names(connection)
    orphan_only = ""
    params: list[Any] = [False, cutoff_param(connection, now), cutoff_param(connection, now)]
    params += [*ids, True]
    if orphan_cutoff is not None:
        orphan_only = " AND rg.{rg_date_added} < %s AND {orphan}".format(
            orphan=orphan_predicate_sql(connection, "rg"), **names
        )
        params.append(cutoff_param(connection, orphan_cutoff))
    date_updated = connection.ops.quote_name(RegressionGroup._meta.get_field("date_updated").column)
    date_resolved = connection.ops.quote_name(
        RegressionGroup._meta.get_field("date_resolved").column
    )
    # RETURNING names the bare column: SQLite does not resolve the alias there.
    sql = (
        "UPDATE {rg_table} AS rg SET {rg_active} = %s, {date_resolved} = %s, {date_updated} = %s"
        " WHERE rg.{rg_id} IN ({placeholders}) AND rg.{rg_active} = %s{orphan_only}"
        " RETURNING {rg_id}"
    ).format(
        placeholders=", ".join(["%s"] * len(ids)),
        orphan_only=orphan_only,
        date_resolved=date_resolved,
        date_updated=date_updated,
        **names,
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row_id for (row_id,) in cursor.fetchall()}


def _orphan_reasons(orphans: Sequence[RegressionGroup]) -> dict[int, OrphanReason]:
    """Each orphan's reason (DESIGN §3), from one query for the GroupHashes without a group."""
    if not orphans:
        return {}
    issue_hashes = {rg.id: hash_fingerprint([rg.fingerprint])[0] for rg in orphans}
    condition = _by_project_condition(
        ((rg.project_id, issue_hashes[rg.id]) for rg in orphans), "hash"
    )
    without_group = set(
        GroupHash.objects.filter(condition, group__isnull=True).values_list("project_id", "hash")
    )
    return {
        rg.id: (
            OrphanReason.GROUPHASH_WITHOUT_GROUP
            if (rg.project_id, issue_hashes[rg.id]) in without_group
            else OrphanReason.MISSING_GROUPHASH
        )
        for rg in orphans
    }


def _orphan_extra(rg: RegressionGroup, reason: OrphanReason) -> dict[str, object]:
    return {
        "regression_group_id": rg.id,
        "project_id": rg.project_id,
        "fingerprint": rg.fingerprint,
        "reason": str(reason),
    }


def _keyed_regressions(
    regression_type: RegressionType, regressions: Iterable[DetectedRegression]
) -> dict[Key, DetectedRegression]:
    """The regressions by (project id, fingerprint), checked before any query."""
    keyed: dict[Key, DetectedRegression] = {}
    for regression in regressions:
        if regression.breakpoint.tzinfo is None:
            raise ValueError(f"breakpoint must be timezone-aware in {regression!r}")
        key = (regression.project_id, generate_fingerprint(regression_type, regression.name))
        if key in keyed:
            raise ValueError(f"regression detected twice for (project_id, fingerprint) {key!r}")
        keyed[key] = regression
    return keyed


def save_regressions_with_versions(
    *,
    regression_type: RegressionType,
    regressions: Iterable[DetectedRegression],
    now: datetime | None = None,
    buffer_period: timedelta = BUFFER_PERIOD,
    min_age: timedelta = ORPHAN_MIN_AGE,
) -> list[RegressionOutcome]:
    """Save each detected regression as a new RegressionGroup version where one is due.

    No version yet: version 1. Newest version inactive: the next one. Newest version active: its
    issue decides: resolved closes it (upstream's issue sync), ongoing or ignored until escalating
    escalates it, missing (an orphan) older than ``min_age`` deactivates it, any other state skips.
    A next version needs its breakpoint at least ``buffer_period`` after the previous version's.
    Outcomes come back in input order; each batch of ``BATCH_SIZE`` is one transaction.
    """
    now = timezone.now() if now is None else now
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    for name, period in (("buffer_period", buffer_period), ("min_age", min_age)):
        if period < timedelta(0):
            raise ValueError(f"{name} must not be negative, got {period}")
    keyed = _keyed_regressions(regression_type, regressions)
    outcomes: dict[Key, RegressionOutcome] = {}
    items = list(keyed.items())
    for start in range(0, len(items), BATCH_SIZE):
        batch = dict(items[start : start + BATCH_SIZE])
        with transaction.atomic():
            outcomes.update(
                _save_batch(
                    regression_type, batch, now=now, buffer_period=buffer_period, min_age=min_age
                )
            )
    actions = Counter(str(outcome.action) for outcome in outcomes.values())
    logger.info(
        VERSIONING_COMPLETED_MESSAGE,
        extra={
            "regression_type": regression_type.name.lower(),
            "count": len(outcomes),
            "actions": dict(sorted(actions.items())),
        },
    )
    return [outcomes[key] for key in keyed]


@dataclass(slots=True)
class _Pending:
    """A version to create, and what its outcome will say."""

    action: RegressionAction
    row: RegressionGroup
    closed_regression_group_id: int | None = None
    orphan_reason: OrphanReason | None = None


def _save_batch(
    regression_type: RegressionType,
    detected: dict[Key, DetectedRegression],
    *,
    now: datetime,
    buffer_period: timedelta,
    min_age: timedelta,
) -> dict[Key, RegressionOutcome]:
    newest = {
        (rg.project_id, rg.fingerprint): rg
        for rg in get_regression_groups(regression_type, list(detected))
    }
    active = [rg for rg in newest.values() if rg.active]
    issue_keys = {
        rg.id: (rg.project_id, tuple(hash_fingerprint([rg.fingerprint]))) for rg in active
    }
    found = bulk_get_groups_from_fingerprints(issue_keys.values()) if issue_keys else {}
    issues: dict[int, Group | None] = {rg_id: found.get(key) for rg_id, key in issue_keys.items()}

    orphans = [rg for rg in active if issues[rg.id] is None]
    orphan_reasons = _orphan_reasons(orphans)
    orphan_cutoff = now - min_age
    deactivated = _deactivate(
        [rg.id for rg in orphans if rg.date_added < orphan_cutoff],
        now=now,
        orphan_cutoff=orphan_cutoff,
    )

    def new_version(key: Key, version: int, baseline: float) -> RegressionGroup:
        regression = detected[key]
        return RegressionGroup(
            type=regression_type,
            project_id=key[0],
            fingerprint=key[1],
            version=version,
            date_regressed=regression.breakpoint,
            baseline=baseline,
            regressed=regression.regressed,
            date_added=now,
            date_updated=now,
        )

    outcomes: dict[Key, RegressionOutcome] = {}
    pending: dict[Key, _Pending] = {}
    to_close: list[Key] = []
    for key, regression in detected.items():
        previous = newest.get(key)
        if previous is None:
            pending[key] = _Pending(
                RegressionAction.CREATED, new_version(key, 1, regression.baseline)
            )
            continue
        within_buffer = regression.breakpoint < previous.date_regressed + buffer_period
        next_version = new_version(key, previous.version + 1, regression.baseline)
        if not previous.active:
            if within_buffer:
                outcomes[key] = _skipped(key, previous, SkipReason.WITHIN_BUFFER)
            else:
                pending[key] = _Pending(RegressionAction.CREATED, next_version)
            continue

        issue = issues[previous.id]
        if issue is None:
            reason = orphan_reasons[previous.id]
            if previous.id in deactivated:
                logger.warning(ORPHAN_DEACTIVATED_MESSAGE, extra=_orphan_extra(previous, reason))
                if within_buffer:
                    outcomes[key] = _skipped(
                        key, previous, SkipReason.WITHIN_BUFFER, closed=True, orphan_reason=reason
                    )
                else:
                    pending[key] = _Pending(
                        RegressionAction.DEACTIVATED_ORPHAN, next_version, previous.id, reason
                    )
            elif previous.date_added >= orphan_cutoff:
                logger.info(ORPHAN_TOO_RECENT_MESSAGE, extra=_orphan_extra(previous, reason))
                outcomes[key] = _skipped(
                    key, previous, SkipReason.ORPHAN_TOO_RECENT, orphan_reason=reason
                )
            else:
                # Its issue appeared (or another run closed it) after the lookup.
                outcomes[key] = _skipped(key, previous, SkipReason.CHANGED_CONCURRENTLY)
        elif issue.status == GroupStatus.RESOLVED:
            # As upstream, the version is closed even when the buffer holds back the next one.
            to_close.append(key)
            if within_buffer:
                outcomes[key] = _skipped(key, previous, SkipReason.WITHIN_BUFFER, closed=True)
            else:
                pending[key] = _Pending(RegressionAction.CLOSED_RESOLVED, next_version, previous.id)
        elif (issue.status, issue.substatus) in ESCALATING_ISSUE_STATES:
            if within_buffer:
                outcomes[key] = _skipped(key, previous, SkipReason.WITHIN_BUFFER)
            else:
                to_close.append(key)
                # As upstream, the escalation measures from the level the old version regressed to.
                next_version.baseline = previous.regressed
                pending[key] = _Pending(RegressionAction.ESCALATED, next_version, previous.id)
        else:
            outcomes[key] = _skipped(key, previous, SkipReason.ISSUE_NOT_ESCALATING)

    closed = _deactivate([newest[key].id for key in to_close], now=now, orphan_cutoff=None)
    for key in to_close:
        if newest[key].id not in closed:
            pending.pop(key, None)
            outcomes[key] = _skipped(key, newest[key], SkipReason.CHANGED_CONCURRENTLY)

    created = RegressionGroup.objects.bulk_create([p.row for p in pending.values()])
    for (key, plan), row in zip(pending.items(), created, strict=True):
        outcomes[key] = RegressionOutcome(
            project_id=key[0],
            fingerprint=key[1],
            action=plan.action,
            regression_group_id=row.id,
            version=row.version,
            closed_regression_group_id=plan.closed_regression_group_id,
            orphan_reason=plan.orphan_reason,
        )
    return outcomes


def _skipped(
    key: Key,
    previous: RegressionGroup,
    reason: SkipReason,
    *,
    closed: bool = False,
    orphan_reason: OrphanReason | None = None,
) -> RegressionOutcome:
    return RegressionOutcome(
        project_id=key[0],
        fingerprint=key[1],
        action=RegressionAction.SKIPPED,
        regression_group_id=previous.id,
        version=previous.version,
        closed_regression_group_id=previous.id if closed else None,
        skip_reason=reason,
        orphan_reason=orphan_reason,
    )
