"""The detector's decision trees, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from regression_tracking.models import GroupStatus, GroupSubStatus, RegressionType
from regression_tracking.services import GRACE_PERIOD, RegressionAction, SkipReason
from regression_tracking.statistical_detectors import ORPHAN_MIN_AGE
from regression_tracking.statistical_detectors.decisions import (
    ENDPOINT_DETECTOR,
    FUNCTION_DETECTOR,
    BreakpointDecision,
    IssueState,
    VersionState,
    decide_breakpoint,
    detector_for,
    is_escalating_issue,
    outside_buffer,
    should_auto_resolve,
    should_escalate,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=7)
CREATED, SKIPPED = RegressionAction.CREATED, RegressionAction.SKIPPED
RESOLVED = IssueState(GroupStatus.RESOLVED, None)


def version(
    *, active: bool = True, added: datetime = OLD, regressed: datetime = OLD
) -> VersionState:
    return VersionState(version=3, active=active, date_added=added, date_regressed=regressed)


def decide(
    previous: VersionState | None, issue: IssueState | None = None, **kw
) -> BreakpointDecision:
    kw.setdefault("breakpoint", NOW)
    return decide_breakpoint(previous=previous, issue=issue, now=NOW, **kw)


class TestDecideBreakpoint:
    def test_no_version_is_version_1(self) -> None:
        assert decide(None) == BreakpointDecision(CREATED, version=1)

    def test_inactive_is_the_next_version(self) -> None:
        assert decide(version(active=False)) == BreakpointDecision(CREATED, version=4)

    def test_inactive_within_the_buffer_is_skipped(self) -> None:
        previous = version(active=False, regressed=NOW - timedelta(hours=23))
        assert decide(previous).skip_reason == SkipReason.WITHIN_BUFFER

    def test_buffer_ends_exactly_after_the_buffer_period(self) -> None:
        previous = version(active=False, regressed=NOW - timedelta(hours=24))
        assert decide(previous).version == 4

    def test_resolved_issue_closes_and_creates(self) -> None:
        assert decide(version(), RESOLVED) == BreakpointDecision(
            RegressionAction.CLOSED_RESOLVED, version=4, close_previous=True
        )

    def test_resolved_issue_within_the_buffer_closes_only(self) -> None:
        previous = version(regressed=NOW - timedelta(hours=1))
        assert decide(previous, RESOLVED) == BreakpointDecision(
            SKIPPED, skip_reason=SkipReason.WITHIN_BUFFER, close_previous=True
        )

    @pytest.mark.parametrize(
        ("status", "substatus"),
        [
            (GroupStatus.UNRESOLVED, GroupSubStatus.ESCALATING),
            (GroupStatus.UNRESOLVED, GroupSubStatus.ONGOING),
            (GroupStatus.UNRESOLVED, GroupSubStatus.REGRESSED),
            (GroupStatus.UNRESOLVED, GroupSubStatus.NEW),
            (GroupStatus.IGNORED, GroupSubStatus.UNTIL_ESCALATING),
            (GroupStatus.IGNORED, GroupSubStatus.UNTIL_CONDITION_MET),
            (GroupStatus.IGNORED, GroupSubStatus.FOREVER),
        ],
    )
    def test_every_other_issue_state_is_skipped(self, status, substatus) -> None:
        assert decide(version(), IssueState(status, substatus)) == BreakpointDecision(
            SKIPPED, skip_reason=SkipReason.ISSUE_NOT_RESOLVED
        )

    def test_old_orphan_is_deactivated_and_the_next_version_created(self) -> None:
        assert decide(version()) == BreakpointDecision(
            RegressionAction.DEACTIVATED_ORPHAN, version=4, deactivate_orphan=True
        )

    def test_old_orphan_within_the_buffer_is_deactivated_only(self) -> None:
        previous = version(regressed=NOW - timedelta(hours=2))
        assert decide(previous) == BreakpointDecision(
            SKIPPED, skip_reason=SkipReason.WITHIN_BUFFER, deactivate_orphan=True
        )

    def test_orphan_at_the_cutoff_is_too_recent(self) -> None:
        previous = version(added=NOW - ORPHAN_MIN_AGE)
        assert decide(previous) == BreakpointDecision(
            SKIPPED, skip_reason=SkipReason.ORPHAN_TOO_RECENT
        )

    def test_min_age_is_a_keyword(self) -> None:
        previous = version(added=NOW - timedelta(hours=2))
        assert decide(previous, min_age=timedelta(hours=1)).deactivate_orphan
        assert not decide(previous, min_age=timedelta(hours=3)).deactivate_orphan

    def test_issue_of_an_inactive_version_is_ignored(self) -> None:
        assert decide(version(active=False), RESOLVED) == BreakpointDecision(CREATED, version=4)


class TestThresholds:
    """Upstream's MovingAverageDetectorState.should_auto_resolve / should_escalate."""

    @pytest.mark.parametrize(
        ("moving_average", "expected"),
        [(100, True), (109.9, True), (110, False), (300, False), (50, True)],
    )
    def test_auto_resolve_below_ten_percent_over_the_baseline(self, moving_average, expected):
        assert (
            should_auto_resolve(moving_average=moving_average, baseline=100, rel_threshold=0.1)
            is expected
        )

    @pytest.mark.parametrize(
        ("moving_average", "expected"),
        [
            (500, True),  # +200 over regressed, 100% of the original rise of 200
            (450, False),  # +150: 75% of the rise is not more than 75%
            (451, True),
            (399, False),  # less than min_change (200 ms would need 500; 100 here)
        ],
    )
    def test_escalate_past_min_change_and_three_quarters_of_the_rise(
        self, moving_average, expected
    ):
        assert (
            should_escalate(
                moving_average=moving_average,
                baseline=100,
                regressed=300,
                min_change=100,
                rel_threshold=0.75,
            )
            is expected
        )

    def test_upstream_constants(self) -> None:
        assert (ENDPOINT_DETECTOR.source, ENDPOINT_DETECTOR.kind) == ("transaction", "endpoint")
        assert (FUNCTION_DETECTOR.source, FUNCTION_DETECTOR.kind) == ("profile", "function")
        assert ENDPOINT_DETECTOR.min_change == 200
        assert FUNCTION_DETECTOR.min_change == 100_000_000
        for detector in (ENDPOINT_DETECTOR, FUNCTION_DETECTOR):
            assert detector.buffer_period == timedelta(days=1)
            assert (detector.resolution_rel_threshold, detector.escalation_rel_threshold) == (
                0.1,
                0.75,
            )
        assert detector_for(RegressionType.FUNCTION) is FUNCTION_DETECTOR
        with pytest.raises(ValueError, match="unknown regression type"):
            detector_for(7)

    def test_grace_period_is_the_cleanup_s(self) -> None:
        assert ORPHAN_MIN_AGE == GRACE_PERIOD

    def test_escalating_states(self) -> None:
        assert is_escalating_issue(IssueState(GroupStatus.UNRESOLVED, GroupSubStatus.ONGOING))
        assert is_escalating_issue(IssueState(GroupStatus.IGNORED, GroupSubStatus.UNTIL_ESCALATING))
        assert not is_escalating_issue(IssueState(GroupStatus.UNRESOLVED, GroupSubStatus.NEW))

    def test_trend_buffer_is_inclusive(self) -> None:
        assert outside_buffer(NOW - timedelta(days=1), NOW, timedelta(days=1))
        assert not outside_buffer(NOW - timedelta(hours=23), NOW, timedelta(days=1))
