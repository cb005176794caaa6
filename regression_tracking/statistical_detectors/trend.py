"""The trend path: escalation and auto-resolution of active versions from the moving average.

Mirrors upstream's ``RegressionDetector.redirect_resolutions``, ``redirect_escalations`` and
``_filter_escalating_groups`` (``src/sentry/statistical_detectors/detector.py``), over typed
candidates instead of ``TrendBundle``s, with the fix at the escalation lookup's "Missing issue
group for regression issue" site: an orphaned active version older than the grace period is
deactivated (race rule) and its candidate passed on like any trend without an active version.
Each function returns the candidates it passes on (upstream's generators yield them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import router, transaction

from regression_tracking.fingerprints import generate_fingerprint
from regression_tracking.issues.grouping import lookup_regression_issues
from regression_tracking.issues.status_change import StatusChange, StatusChangeProducer
from regression_tracking.models import GroupStatus, GroupSubStatus, RegressionGroup, RegressionType
from regression_tracking.ops import metrics
from regression_tracking.orphans import GRACE_PERIOD
from regression_tracking.statistical_detectors.breakpoint import (
    ORPHAN_DEACTIVATED_MESSAGE,
    ORPHAN_DEACTIVATED_METRIC,
    ORPHAN_TOO_RECENT_MESSAGE,
    get_regression_groups,
    orphan_extra,
    validated_now,
)
from regression_tracking.statistical_detectors.decisions import (
    DetectorConfig,
    IssueState,
    detector_for,
    is_escalating_issue,
    outside_buffer,
    should_auto_resolve,
    should_escalate,
)
from regression_tracking.statistical_detectors.writes import (
    close_active_versions,
    deactivate_orphaned_versions,
)

logger = logging.getLogger("regression_tracking.services.versioning")

AUTO_RESOLVED_METRIC = "statistical_detectors.objects.auto_resolved"
ESCALATED_METRIC = "statistical_detectors.objects.escalated"
TREND_FAILED_MESSAGE = "Trend candidate could not be evaluated"


@dataclass(frozen=True, slots=True)
class TrendCandidate:
    """One object's trend this hour: its version's key and the current moving average."""

    project_id: int
    # The endpoint's transaction or the function id (upstream's ``DetectorPayload.group``).
    name: str | int
    # Upstream's ``MovingAverageDetectorState.get_moving_avg()`` (the long moving average).
    moving_average: float


def _active_versions(
    detector: DetectorConfig, candidates: Sequence[TrendCandidate]
) -> dict[TrendCandidate, RegressionGroup]:
    """Upstream's ``get_regression_groups(active=True)`` step, one query for the candidates."""
    keys = {
        c: (c.project_id, generate_fingerprint(detector.regression_type, c.name))
        for c in candidates
    }
    active = {
        (rg.project_id, rg.fingerprint): rg
        for rg in get_regression_groups(
            detector.regression_type, list(set(keys.values())), active=True
        )
    }
    return {c: active[key] for c, key in keys.items() if key in active}


def _status_change(
    detector: DetectorConfig, candidate: TrendCandidate, status: int, substatus: int | None
) -> StatusChange:
    # As upstream: the full (unhashed) fingerprint, to align with the issue.
    return StatusChange(
        fingerprint=(generate_fingerprint(detector.regression_type, candidate.name),),
        project_id=candidate.project_id,
        new_status=status,
        new_substatus=substatus,
    )


def redirect_resolutions(
    *,
    regression_type: RegressionType,
    candidates: Iterable[TrendCandidate],
    timestamp: datetime,
    producer: StatusChangeProducer,
) -> list[TrendCandidate]:
    """Deactivate each active version whose trend is back at its baseline, outside the buffer,
    and produce a RESOLVED status change for it (no issue lookup, as upstream: the consumer
    drops the change when the group is missing); returns the other candidates."""
    timestamp = validated_now(timestamp)
    detector = detector_for(regression_type)
    candidates = list(candidates)
    passed_on, resolving = _split_candidates(
        detector,
        candidates,
        timestamp,
        lambda candidate, group: should_auto_resolve(
            moving_average=candidate.moving_average,
            baseline=group.baseline,
            rel_threshold=detector.resolution_rel_threshold,
        ),
    )
    to_resolve = {group.id: candidate for candidate, group in resolving}
    with transaction.atomic(using=router.db_for_write(RegressionGroup)):
        resolved = close_active_versions(list(to_resolve), now=timestamp)
    for group_id in sorted(resolved):
        producer.produce(_status_change(detector, to_resolve[group_id], GroupStatus.RESOLVED, None))
    metrics.incr(AUTO_RESOLVED_METRIC, amount=len(resolved), tags=detector.tags)
    return passed_on


def _escalated_version(
    closed: RegressionGroup, moving_average: float, timestamp: datetime
) -> RegressionGroup:
    """The version after ``closed``, regressed from its regressed value to the moving average."""
    return RegressionGroup(
        project_id=closed.project_id,
        type=closed.type,
        fingerprint=closed.fingerprint,
        version=closed.version + 1,
        active=True,
        date_added=timestamp,
        date_updated=timestamp,
        date_regressed=timestamp,
        baseline=closed.regressed,
        regressed=moving_average,
    )


def _split_candidates(
    detector: DetectorConfig,
    candidates: list[TrendCandidate],
    timestamp: datetime,
    passes: Callable[[TrendCandidate, RegressionGroup], bool],
) -> tuple[list[TrendCandidate], list[tuple[TrendCandidate, RegressionGroup]]]:
    """The candidates passed on, and those whose active version ``passes`` the trend's test
    outside the buffer (with that version). A test that divides by zero drops its candidate
    with a warning, as upstream's except clause reports the bundle and goes no further."""
    versions = _active_versions(detector, candidates)
    passed_on: list[TrendCandidate] = []
    selected: list[tuple[TrendCandidate, RegressionGroup]] = []
    for candidate in candidates:
        group = versions.get(candidate)
        try:
            passed = group is not None and passes(candidate, group)
        except ZeroDivisionError:
            logger.warning(TREND_FAILED_MESSAGE, extra={"project_id": candidate.project_id})
            continue
        if (
            group is not None
            and passed
            and outside_buffer(group.date_regressed, timestamp, detector.buffer_period)
        ):
            selected.append((candidate, group))
        else:
            passed_on.append(candidate)
    return passed_on, selected


def redirect_escalations(
    *,
    regression_type: RegressionType,
    candidates: Iterable[TrendCandidate],
    timestamp: datetime,
    producer: StatusChangeProducer,
    min_age: timedelta = GRACE_PERIOD,
) -> list[TrendCandidate]:
    """Escalate each active version whose trend passed upstream's thresholds, outside the buffer,
    when its issue is ongoing or ignored until escalating: close it, create the next version
    (``date_regressed = timestamp``, ``baseline = old.regressed``, ``regressed = the moving
    average``) and produce an ESCALATING status change.

    Returned: the candidates that were not escalation candidates, and those whose orphaned
    version this call deactivated. Escalation candidates with an issue in another state, or with
    an orphan younger than ``min_age``, go no further (as upstream).
    """
    timestamp = validated_now(timestamp, min_age=min_age)
    detector = detector_for(regression_type)
    candidates = list(candidates)
    passed_on, escalating = _split_candidates(
        detector,
        candidates,
        timestamp,
        lambda candidate, group: should_escalate(
            moving_average=candidate.moving_average,
            baseline=group.baseline,
            regressed=group.regressed,
            min_change=detector.min_change,
            rel_threshold=detector.escalation_rel_threshold,
        ),
    )
    if not escalating:
        metrics.incr(ESCALATED_METRIC, amount=0, tags=detector.tags)
        return passed_on

    issues = lookup_regression_issues(group for _, group in escalating)
    to_escalate: dict[int, tuple[TrendCandidate, RegressionGroup]] = {}
    orphans: dict[int, tuple[TrendCandidate, RegressionGroup]] = {}
    cutoff = timestamp - min_age
    for candidate, group in escalating:
        issue = issues.groups[group.id]
        if issue is None:
            if group.date_added < cutoff:
                orphans[group.id] = (candidate, group)
            else:
                extra = orphan_extra(group, issues.orphan_reasons[group.id])
                logger.info(ORPHAN_TOO_RECENT_MESSAGE, extra=extra)
        elif is_escalating_issue(IssueState(issue.status, issue.substatus)):
            to_escalate[group.id] = (candidate, group)

    with transaction.atomic(using=router.db_for_write(RegressionGroup)):
        deactivated = deactivate_orphaned_versions(list(orphans), now=timestamp, cutoff=cutoff)
        closed = close_active_versions(list(to_escalate), now=timestamp)
        RegressionGroup.objects.bulk_create(
            _escalated_version(group, candidate.moving_average, timestamp)
            for group_id, (candidate, group) in sorted(to_escalate.items())
            if group_id in closed
        )
    for group_id in sorted(deactivated):
        candidate, group = orphans[group_id]
        logger.warning(
            ORPHAN_DEACTIVATED_MESSAGE, extra=orphan_extra(group, issues.orphan_reasons[group_id])
        )
        metrics.incr(ORPHAN_DEACTIVATED_METRIC, tags={**detector.tags, "path": "escalation"})
        passed_on.append(candidate)
    for group_id in sorted(closed):
        candidate, _ = to_escalate[group_id]
        producer.produce(
            _status_change(detector, candidate, GroupStatus.UNRESOLVED, GroupSubStatus.ESCALATING)
        )
    metrics.incr(ESCALATED_METRIC, amount=len(closed), tags=detector.tags)
    return passed_on
