"""The detector's decision trees as pure functions: no database, no clock, no logging.

Upstream (``src/sentry/statistical_detectors/detector.py``, ``algorithm.py`` and the detector
classes in ``src/sentry/tasks/statistical_detectors.py``) spreads these conditions over
generators that query and write as they go; here each is one function of plain values, so every
branch is tested without a database (``tests/test_versioning_decisions.py``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from regression_tracking.models import GroupStatus, GroupSubStatus, RegressionType
from regression_tracking.orphans import GRACE_PERIOD

# Upstream's RegressionDetector.buffer_period (both detectors): no new version of a fingerprint
# until this long after the previous version's breakpoint, and no escalation or auto-resolution
# of a version until this long after its date_regressed, so its issue does not flap.
BUFFER_PERIOD = timedelta(days=1)

# Issue states in which a trend escalates the issue (upstream _filter_escalating_groups).
ESCALATING_ISSUE_STATES = frozenset(
    {
        (GroupStatus.UNRESOLVED, GroupSubStatus.ONGOING),
        (GroupStatus.IGNORED, GroupSubStatus.UNTIL_ESCALATING),
    }
)


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """One detector's constants, as upstream's ``RegressionDetector`` subclasses set them."""

    source: str
    kind: str
    regression_type: RegressionType
    # The smallest rise of the moving average over ``regressed`` that may escalate, in the unit
    # of the detector's p95 (ms for endpoints, ns for functions).
    min_change: float
    buffer_period: timedelta
    # Auto-resolve when the moving average is less than this relative change above the baseline.
    resolution_rel_threshold: float
    # Escalate when the rise over ``regressed`` is more than this share of the original rise.
    escalation_rel_threshold: float

    @property
    def tags(self) -> dict[str, str]:
        return {"source": self.source, "kind": self.kind}


ENDPOINT_DETECTOR = DetectorConfig(
    source="transaction",
    kind="endpoint",
    regression_type=RegressionType.ENDPOINT,
    min_change=200,  # 200 ms
    buffer_period=BUFFER_PERIOD,
    resolution_rel_threshold=0.1,
    escalation_rel_threshold=0.75,
)
FUNCTION_DETECTOR = DetectorConfig(
    source="profile",
    kind="function",
    regression_type=RegressionType.FUNCTION,
    min_change=100_000_000,  # 100 ms in ns
    buffer_period=BUFFER_PERIOD,
    resolution_rel_threshold=0.1,
    escalation_rel_threshold=0.75,
)


def detector_for(regression_type: RegressionType) -> DetectorConfig:
    """The detector of a regression type (``ValueError`` for any other value)."""
    if regression_type == RegressionType.ENDPOINT:
        return ENDPOINT_DETECTOR
    if regression_type == RegressionType.FUNCTION:
        return FUNCTION_DETECTOR
    raise ValueError(f"unknown regression type: {regression_type!r}")


class RegressionAction(enum.StrEnum):
    # Version 1, or the next version after an inactive one.
    CREATED = "created"
    # The active version's issue was resolved: it was closed and the next version created.
    CLOSED_RESOLVED = "closed_resolved"
    # The trend path escalated the active version: closed, next version created.
    ESCALATED = "escalated"
    # The active version had no issue past the grace period: deactivated, next version created.
    DEACTIVATED_ORPHAN = "deactivated_orphan"
    SKIPPED = "skipped"


class SkipReason(enum.StrEnum):
    # The breakpoint is less than the buffer period after the previous version's breakpoint.
    WITHIN_BUFFER = "within_buffer"
    # The active version's issue is not resolved: upstream's breakpoint path saves nothing.
    ISSUE_NOT_RESOLVED = "issue_not_resolved"
    # The active version has no issue but is younger than the grace period.
    ORPHAN_TOO_RECENT = "orphan_too_recent"
    # The active version got its issue, or was closed, between the lookup and the write.
    CHANGED_CONCURRENTLY = "changed_concurrently"
    # The function flow saves a version only with its occurrence, and this one was not emitted.
    NOT_EMITTED = "occurrence_not_emitted"


@dataclass(frozen=True, slots=True)
class VersionState:
    """What the decisions need of the newest saved version of a fingerprint."""

    version: int
    active: bool
    date_added: datetime
    date_regressed: datetime


@dataclass(frozen=True, slots=True)
class IssueState:
    """The live issue of an active version (``None`` in its place: an orphan)."""

    status: int
    substatus: int | None


@dataclass(frozen=True, slots=True)
class BreakpointDecision:
    """What the breakpoint path does with one detected regression."""

    action: RegressionAction
    # The version to create (None when skipped).
    version: int | None = None
    skip_reason: SkipReason | None = None
    # Close the active previous version (resolved issue) before anything else.
    close_previous: bool = False
    # Deactivate the active previous version as an orphan (re-checked by the race rule).
    deactivate_orphan: bool = False


def decide_breakpoint(
    *,
    previous: VersionState | None,
    issue: IssueState | None,
    breakpoint: datetime,
    now: datetime,
    buffer_period: timedelta = BUFFER_PERIOD,
    min_age: timedelta = GRACE_PERIOD,
) -> BreakpointDecision:
    """Upstream's ``get_regression_versions`` + ``save_regressions_with_versions`` for one
    regression, with the orphan fix.

    No version: version 1. Newest inactive: the next, unless the breakpoint is within the buffer
    of its ``date_regressed``. Newest active: only a RESOLVED issue closes it (and the next
    follows, buffer permitting); any other issue state is skipped. No issue at all (an orphan):
    younger than ``min_age`` by ``date_added`` is skipped; older is deactivated and the next
    version follows, buffer permitting. ``issue`` is ignored unless ``previous`` is active.
    """
    if previous is None:
        return BreakpointDecision(RegressionAction.CREATED, version=1)
    within_buffer = breakpoint < previous.date_regressed + buffer_period
    next_version = previous.version + 1
    if not previous.active:
        if within_buffer:
            return BreakpointDecision(
                RegressionAction.SKIPPED, skip_reason=SkipReason.WITHIN_BUFFER
            )
        return BreakpointDecision(RegressionAction.CREATED, version=next_version)
    if issue is None:
        if previous.date_added >= now - min_age:
            return BreakpointDecision(
                RegressionAction.SKIPPED, skip_reason=SkipReason.ORPHAN_TOO_RECENT
            )
        if within_buffer:
            return BreakpointDecision(
                RegressionAction.SKIPPED,
                skip_reason=SkipReason.WITHIN_BUFFER,
                deactivate_orphan=True,
            )
        return BreakpointDecision(
            RegressionAction.DEACTIVATED_ORPHAN, version=next_version, deactivate_orphan=True
        )
    if issue.status != GroupStatus.RESOLVED:
        return BreakpointDecision(
            RegressionAction.SKIPPED, skip_reason=SkipReason.ISSUE_NOT_RESOLVED
        )
    # As upstream, the version is closed even when the buffer holds back the next one.
    if within_buffer:
        return BreakpointDecision(
            RegressionAction.SKIPPED, skip_reason=SkipReason.WITHIN_BUFFER, close_previous=True
        )
    return BreakpointDecision(
        RegressionAction.CLOSED_RESOLVED, version=next_version, close_previous=True
    )


def is_escalating_issue(issue: IssueState) -> bool:
    """Upstream's ``_filter_escalating_groups``: ongoing, or ignored until escalating."""
    return (issue.status, issue.substatus) in ESCALATING_ISSUE_STATES


def outside_buffer(date_regressed: datetime, timestamp: datetime, buffer_period: timedelta) -> bool:
    """Upstream's ``group.date_regressed + cls.buffer_period <= timestamp`` (trend path)."""
    return date_regressed + buffer_period <= timestamp


def should_auto_resolve(*, moving_average: float, baseline: float, rel_threshold: float) -> bool:
    """Upstream's ``MovingAverageDetectorState.should_auto_resolve``: the trend is back within
    ``rel_threshold`` of the version's baseline (any value below the baseline too)."""
    return (moving_average - baseline) / baseline < rel_threshold


def should_escalate(
    *,
    moving_average: float,
    baseline: float,
    regressed: float,
    min_change: float,
    rel_threshold: float,
) -> bool:
    """Upstream's ``MovingAverageDetectorState.should_escalate``: the trend rose at least
    ``min_change`` above ``regressed``, by more than ``rel_threshold`` of the original rise."""
    change = moving_average - regressed
    if change < min_change:
        return False
    return change / (regressed - baseline) > rel_threshold
