"""The breakpoint path: each detected regression becomes the next RegressionGroup version.

Mirrors Sentry's ``get_regression_groups`` (``src/sentry/models/statistical_detectors.py``) and
``RegressionDetector.get_regression_versions`` / ``save_regressions_with_versions``
(``src/sentry/statistical_detectors/detector.py``), with the fix at its "Missing issue group for
regression issue" site: an active version without a live group, older than the grace period, is
deactivated (race rule) and the regression gets the next version; upstream skips it on every run.

A batch is read and decided first (``plan_versions``: two statements, the decisions are
``decisions.decide_breakpoint``), then written (``apply_versions``), so the function flow can emit
occurrences in between and save only the emitted ones.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import reduce
from operator import or_

from django.db import router, transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from regression_tracking.fingerprints import generate_fingerprint
from regression_tracking.issues.grouping import lookup_regression_issues
from regression_tracking.models import RegressionGroup, RegressionType
from regression_tracking.ops import metrics
from regression_tracking.orphans import GRACE_PERIOD, OrphanReason
from regression_tracking.statistical_detectors.decisions import (
    BUFFER_PERIOD,
    BreakpointDecision,
    IssueState,
    RegressionAction,
    SkipReason,
    VersionState,
    decide_breakpoint,
    detector_for,
)
from regression_tracking.statistical_detectors.writes import (
    close_active_versions,
    deactivate_orphaned_versions,
)

logger = logging.getLogger("regression_tracking.services.versioning")

# Upstream's chunk size: each batch is read, decided and written in one short transaction.
BATCH_SIZE = 100

ORPHAN_DEACTIVATED_MESSAGE = "Deactivated orphaned regression group"
ORPHAN_TOO_RECENT_MESSAGE = "Orphaned regression group too recent to deactivate"
VERSIONING_COMPLETED_MESSAGE = "regression_versioning.completed"

# Upstream's count of regressions that met an active version (tags source, kind). Upstream adds
# every one of them, the resolved ones it then versions included; so does this mirror, the
# deactivated orphans included: it counts the lookups the breakpoint path made.
BREAKPOINT_SKIPPED_METRIC = "statistical_detectors.breakpoint.skipped"
# New here: an orphaned active version this project deactivated (tags source, kind, path).
ORPHAN_DEACTIVATED_METRIC = "statistical_detectors.regression_group.orphan_deactivated"

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


@dataclass(frozen=True, slots=True)
class RegressionOutcome:
    """What happened to one detected regression."""

    project_id: int
    fingerprint: str
    action: RegressionAction
    # The version created, or (when skipped) the latest existing version (0 when none exists).
    regression_group_id: int
    version: int
    # The previously active version this call closed or deactivated, if any (it is set on a skip
    # too when the version was closed but the buffer held back the next one, as upstream does).
    closed_regression_group_id: int | None = None
    skip_reason: SkipReason | None = None
    # Set when the active version was an orphan (deactivated or left alone).
    orphan_reason: OrphanReason | None = None


def _by_project_condition(pairs: Iterable[Key]) -> Q:
    """``(project_id = p AND fingerprint IN (…)) OR …``, one term per project, stable order."""
    by_project: defaultdict[int, set[str]] = defaultdict(set)
    for project_id, fingerprint in pairs:
        by_project[project_id].add(fingerprint)
    return reduce(
        or_,
        (
            Q(project_id=project_id, fingerprint__in=sorted(fingerprints))
            for project_id, fingerprints in sorted(by_project.items())
        ),
    )


def get_regression_groups(
    regression_type: RegressionType,
    pairs: Sequence[Key],
    active: bool | None = None,
) -> list[RegressionGroup]:
    """The newest version of each (project id, fingerprint) of ``regression_type``, in one query.

    As upstream, ``active`` filters before the newest is picked: ``active=False`` gives the newest
    inactive version even when a newer active one exists. Upstream's DISTINCT ON is
    PostgreSQL-only; this correlated ``version = (newest version)`` subquery runs on any database,
    and no pairs is no query (upstream's ``Q()`` would match every row of the type).
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
        RegressionGroup.objects.filter(_by_project_condition(pairs), status, type=regression_type)
        .filter(version=Subquery(newest_version))
        .order_by("project_id", "fingerprint")
    )


@dataclass(frozen=True, slots=True)
class PlannedVersion:
    """One regression, the newest version it met, and what the decision tree says to do."""

    key: Key
    regression: DetectedRegression
    previous: RegressionGroup | None
    decision: BreakpointDecision
    orphan_reason: OrphanReason | None = None


def keyed_regressions(
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


def plan_versions(
    regression_type: RegressionType,
    detected: dict[Key, DetectedRegression],
    *,
    now: datetime,
    buffer_period: timedelta,
    min_age: timedelta,
) -> list[PlannedVersion]:
    """Read the newest versions and their issues (two statements) and decide each regression."""
    newest = {
        (rg.project_id, rg.fingerprint): rg
        for rg in get_regression_groups(regression_type, list(detected))
    }
    active = [rg for rg in newest.values() if rg.active]
    issues = lookup_regression_issues(active) if active else None
    planned: list[PlannedVersion] = []
    for key, regression in detected.items():
        previous = newest.get(key)
        state = issue = reason = None
        if previous is not None:
            state = VersionState(
                previous.version, previous.active, previous.date_added, previous.date_regressed
            )
            if previous.active and issues is not None:
                group = issues.groups[previous.id]
                issue = None if group is None else IssueState(group.status, group.substatus)
                reason = issues.orphan_reasons.get(previous.id)
        decision = decide_breakpoint(
            previous=state,
            issue=issue,
            breakpoint=regression.breakpoint,
            now=now,
            buffer_period=buffer_period,
            min_age=min_age,
        )
        planned.append(PlannedVersion(key, regression, previous, decision, reason))
    met_active = sum(1 for p in planned if p.previous is not None and p.previous.active)
    metrics.incr(
        BREAKPOINT_SKIPPED_METRIC, amount=met_active, tags=detector_for(regression_type).tags
    )
    return planned


def skipped_outcome(
    planned: PlannedVersion, reason: SkipReason, *, closed: bool = False
) -> RegressionOutcome:
    previous = planned.previous
    return RegressionOutcome(
        project_id=planned.key[0],
        fingerprint=planned.key[1],
        action=RegressionAction.SKIPPED,
        regression_group_id=previous.id if previous is not None else 0,
        version=previous.version if previous is not None else 0,
        closed_regression_group_id=previous.id if closed and previous is not None else None,
        skip_reason=reason,
        orphan_reason=planned.orphan_reason,
    )


def orphan_extra(rg: RegressionGroup, reason: OrphanReason | None) -> dict[str, object]:
    return {
        "regression_group_id": rg.id,
        "project_id": rg.project_id,
        "fingerprint": rg.fingerprint,
        "reason": str(reason),
    }


def apply_versions(
    regression_type: RegressionType,
    planned: Sequence[PlannedVersion],
    *,
    now: datetime,
    min_age: timedelta,
) -> dict[Key, RegressionOutcome]:
    """Write the decisions: close, deactivate (race rule), create; at most three statements.

    A previous version that another writer changed meanwhile (its issue appeared, or it was
    closed) is skipped as ``changed_concurrently``; one WARNING per orphan deactivated.
    """
    closed = close_active_versions(
        [p.previous.id for p in planned if p.previous and p.decision.close_previous], now=now
    )
    deactivated = deactivate_orphaned_versions(
        [p.previous.id for p in planned if p.previous and p.decision.deactivate_orphan],
        now=now,
        cutoff=now - min_age,
    )
    detector = detector_for(regression_type)
    outcomes: dict[Key, RegressionOutcome] = {}
    to_create: dict[Key, tuple[PlannedVersion, RegressionGroup]] = {}
    for p in planned:
        decision, previous = p.decision, p.previous
        ended = closed if decision.close_previous else deactivated
        if previous is not None and (decision.close_previous or decision.deactivate_orphan):
            if previous.id not in ended:
                outcomes[p.key] = skipped_outcome(p, SkipReason.CHANGED_CONCURRENTLY)
                continue
            if decision.deactivate_orphan:
                logger.warning(
                    ORPHAN_DEACTIVATED_MESSAGE, extra=orphan_extra(previous, p.orphan_reason)
                )
                metrics.incr(
                    ORPHAN_DEACTIVATED_METRIC, tags={**detector.tags, "path": "breakpoint"}
                )
        if decision.skip_reason == SkipReason.ORPHAN_TOO_RECENT and previous is not None:
            logger.info(ORPHAN_TOO_RECENT_MESSAGE, extra=orphan_extra(previous, p.orphan_reason))
        if decision.version is None:
            assert decision.skip_reason is not None
            ended_previous = decision.close_previous or decision.deactivate_orphan
            outcomes[p.key] = skipped_outcome(p, decision.skip_reason, closed=ended_previous)
            continue
        row = RegressionGroup(
            type=regression_type,
            project_id=p.key[0],
            fingerprint=p.key[1],
            version=decision.version,
            active=True,
            date_regressed=p.regression.breakpoint,
            baseline=p.regression.baseline,
            regressed=p.regression.regressed,
            date_added=now,
            date_updated=now,
        )
        to_create[p.key] = (p, row)
    created = RegressionGroup.objects.bulk_create([row for _, row in to_create.values()])
    for (key, (p, _)), row in zip(to_create.items(), created, strict=True):
        ended_id = p.previous.id if p.previous is not None and p.previous.active else None
        outcomes[key] = RegressionOutcome(
            project_id=key[0],
            fingerprint=key[1],
            action=p.decision.action,
            regression_group_id=row.id,
            version=row.version,
            closed_regression_group_id=ended_id,
            orphan_reason=p.orphan_reason,
        )
    return outcomes


def validated_now(now: datetime | None, **periods: timedelta) -> datetime:
    """``now`` (default: the current time), checked aware; every period checked non-negative."""
    now = timezone.now() if now is None else now
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    for name, period in periods.items():
        if period < timedelta(0):
            raise ValueError(f"{name} must not be negative, got {period}")
    return now


def log_completed(regression_type: RegressionType, outcomes: Collection[RegressionOutcome]) -> None:
    actions = Counter(str(outcome.action) for outcome in outcomes)
    logger.info(
        VERSIONING_COMPLETED_MESSAGE,
        extra={
            "regression_type": regression_type.name.lower(),
            "count": len(outcomes),
            "actions": dict(sorted(actions.items())),
        },
    )


def save_regressions_with_versions(
    *,
    regression_type: RegressionType,
    regressions: Iterable[DetectedRegression],
    now: datetime | None = None,
    buffer_period: timedelta = BUFFER_PERIOD,
    min_age: timedelta = GRACE_PERIOD,
) -> list[RegressionOutcome]:
    """Save each detected regression as a new RegressionGroup version where one is due.

    The decision tree is ``decisions.decide_breakpoint``. Outcomes come back in input order; each
    batch of ``BATCH_SIZE`` is one transaction of at most five statements.
    """
    now = validated_now(now, buffer_period=buffer_period, min_age=min_age)
    keyed = keyed_regressions(regression_type, regressions)
    outcomes: dict[Key, RegressionOutcome] = {}
    items = list(keyed.items())
    for start in range(0, len(items), BATCH_SIZE):
        batch = dict(items[start : start + BATCH_SIZE])
        with transaction.atomic(using=router.db_for_write(RegressionGroup)):
            planned = plan_versions(
                regression_type, batch, now=now, buffer_period=buffer_period, min_age=min_age
            )
            outcomes.update(apply_versions(regression_type, planned, now=now, min_age=min_age))
    log_completed(regression_type, outcomes.values())
    return [outcomes[key] for key in keyed]
