"""Regression versioning: upstream's detector paths that touch RegressionGroup, with the fix.

- ``decisions``: the decision trees and thresholds, pure functions.
- ``breakpoint``: ``get_regression_groups`` and ``save_regressions_with_versions`` (the
  breakpoint path).
- ``trend``: ``redirect_escalations`` and ``redirect_resolutions`` (the trend path).
- ``adapter``: upstream's ``BreakpointData`` dicts as ``DetectedRegression``.
- ``writes``: the two statements that end an active version (the orphan one is the race rule's).
"""

from __future__ import annotations

from regression_tracking.issues.status_change import (
    DROPPED_GROUP_NOT_FOUND_METRIC,
    RecordingProducer,
    StatusChange,
    StatusChangeProducer,
    process_status_change,
)
from regression_tracking.orphans import GRACE_PERIOD
from regression_tracking.statistical_detectors.adapter import (
    BreakpointData,
    from_breakpoint_data,
    from_breakpoints,
)
from regression_tracking.statistical_detectors.breakpoint import (
    BATCH_SIZE,
    BREAKPOINT_SKIPPED_METRIC,
    ORPHAN_DEACTIVATED_MESSAGE,
    ORPHAN_DEACTIVATED_METRIC,
    ORPHAN_TOO_RECENT_MESSAGE,
    VERSIONING_COMPLETED_MESSAGE,
    DetectedRegression,
    RegressionOutcome,
    get_regression_groups,
    save_regressions_with_versions,
)
from regression_tracking.statistical_detectors.decisions import (
    BUFFER_PERIOD,
    ENDPOINT_DETECTOR,
    ESCALATING_ISSUE_STATES,
    FUNCTION_DETECTOR,
    DetectorConfig,
    RegressionAction,
    SkipReason,
    decide_breakpoint,
)
from regression_tracking.statistical_detectors.trend import (
    AUTO_RESOLVED_METRIC,
    ESCALATED_METRIC,
    TrendCandidate,
    redirect_escalations,
    redirect_resolutions,
)

# The grace period's earlier name in this package, kept for callers: use orphans.GRACE_PERIOD.
ORPHAN_MIN_AGE = GRACE_PERIOD

__all__ = [
    "AUTO_RESOLVED_METRIC",
    "BATCH_SIZE",
    "BREAKPOINT_SKIPPED_METRIC",
    "BUFFER_PERIOD",
    "DROPPED_GROUP_NOT_FOUND_METRIC",
    "ENDPOINT_DETECTOR",
    "ESCALATED_METRIC",
    "ESCALATING_ISSUE_STATES",
    "FUNCTION_DETECTOR",
    "ORPHAN_DEACTIVATED_MESSAGE",
    "ORPHAN_DEACTIVATED_METRIC",
    "ORPHAN_MIN_AGE",
    "ORPHAN_TOO_RECENT_MESSAGE",
    "VERSIONING_COMPLETED_MESSAGE",
    "BreakpointData",
    "DetectedRegression",
    "DetectorConfig",
    "RecordingProducer",
    "RegressionAction",
    "RegressionOutcome",
    "SkipReason",
    "StatusChange",
    "StatusChangeProducer",
    "TrendCandidate",
    "decide_breakpoint",
    "from_breakpoint_data",
    "from_breakpoints",
    "get_regression_groups",
    "process_status_change",
    "redirect_escalations",
    "redirect_resolutions",
    "save_regressions_with_versions",
]
