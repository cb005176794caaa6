"""The public API: one import path for what commands, the admin, tests and callers use.

The code lives by product: ``orphans`` (the orphan rule), ``issues`` (the lookup mirror),
``statistical_detectors`` and ``tasks`` (the detector mirror), ``cleanup`` (the operator's
cleanup). A name listed here is imported from ``regression_tracking.services`` by the commands,
the admin, tests and benchmarks; anything not listed from its own module. The product modules
import each other directly, never this facade (it would be an import cycle).
"""

from __future__ import annotations

from regression_tracking.cleanup.backup import (
    BackupFormatError,
    BackupRefusedError,
    BackupWriteError,
    BackupWriter,
    RestoreResult,
    UnknownProjectsError,
    read_backup,
    restore_regression_groups,
)
from regression_tracking.cleanup.detection import (
    BreakdownKey,
    Detection,
    OrphanBreakdown,
    OrphanScope,
    detect_orphans,
)
from regression_tracking.cleanup.locking import CleanupAlreadyRunning, DetectionLockTimeout
from regression_tracking.cleanup.replication import StandbyLag, StandbyLagUnreadable
from regression_tracking.cleanup.run import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BATCH_TIME_SECONDS,
    MAX_BATCH_TIME_SECONDS,
    BatchReport,
    CleanupAction,
    CleanupArgumentError,
    CleanupRequest,
    CleanupResult,
    ConnectionDropped,
    LagWait,
    StopReason,
    cleanup_orphaned_regressions,
    run_cleanup,
)
from regression_tracking.cleanup.sizing import MAX_BATCH_SIZE
from regression_tracking.issues.grouping import (
    MISSING_GROUP_MESSAGE,
    MISSING_ISSUE_GROUP_MESSAGE,
    NOT_FOUND_METRIC,
    bulk_get_groups_from_fingerprints,
    get_group_from_fingerprint,
    get_issue_groups_for_regressions,
    lookup_issue_groups,
)
from regression_tracking.orphans import GRACE_PERIOD, OrphanReason
from regression_tracking.statistical_detectors import (
    BUFFER_PERIOD,
    ESCALATING_ISSUE_STATES,
    ORPHAN_DEACTIVATED_MESSAGE,
    ORPHAN_TOO_RECENT_MESSAGE,
    VERSIONING_COMPLETED_MESSAGE,
    BreakpointData,
    DetectedRegression,
    RegressionAction,
    RegressionOutcome,
    SkipReason,
    StatusChange,
    StatusChangeProducer,
    TrendCandidate,
    from_breakpoint_data,
    get_regression_groups,
    process_status_change,
    redirect_escalations,
    redirect_resolutions,
    save_regressions_with_versions,
)
from regression_tracking.tasks.statistical_detectors import detect_function_change_points

# The grace period's earlier name here, kept for callers: GRACE_PERIOD is the one definition.
DEFAULT_MIN_AGE = GRACE_PERIOD

__all__ = [
    "BUFFER_PERIOD",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_BATCH_TIME_SECONDS",
    "DEFAULT_MIN_AGE",
    "ESCALATING_ISSUE_STATES",
    "GRACE_PERIOD",
    "MAX_BATCH_SIZE",
    "MAX_BATCH_TIME_SECONDS",
    "MISSING_GROUP_MESSAGE",
    "MISSING_ISSUE_GROUP_MESSAGE",
    "NOT_FOUND_METRIC",
    "ORPHAN_DEACTIVATED_MESSAGE",
    "ORPHAN_TOO_RECENT_MESSAGE",
    "VERSIONING_COMPLETED_MESSAGE",
    "BackupFormatError",
    "BackupRefusedError",
    "BackupWriteError",
    "BackupWriter",
    "BatchReport",
    "BreakdownKey",
    "BreakpointData",
    "CleanupAction",
    "CleanupAlreadyRunning",
    "CleanupArgumentError",
    "CleanupRequest",
    "CleanupResult",
    "ConnectionDropped",
    "DetectedRegression",
    "Detection",
    "DetectionLockTimeout",
    "LagWait",
    "OrphanBreakdown",
    "OrphanReason",
    "OrphanScope",
    "RegressionAction",
    "RegressionOutcome",
    "RestoreResult",
    "SkipReason",
    "StandbyLag",
    "StandbyLagUnreadable",
    "StatusChange",
    "StatusChangeProducer",
    "StopReason",
    "TrendCandidate",
    "UnknownProjectsError",
    "bulk_get_groups_from_fingerprints",
    "cleanup_orphaned_regressions",
    "detect_function_change_points",
    "detect_orphans",
    "from_breakpoint_data",
    "get_group_from_fingerprint",
    "get_issue_groups_for_regressions",
    "get_regression_groups",
    "lookup_issue_groups",
    "process_status_change",
    "read_backup",
    "redirect_escalations",
    "redirect_resolutions",
    "restore_regression_groups",
    "run_cleanup",
    "save_regressions_with_versions",
]
