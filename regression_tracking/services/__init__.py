"""All database logic: the issue lookup, orphan detection and the cleanup.

Commands, the admin and tests call these functions; nothing here prints. One import path per
name: a name listed here is imported from ``regression_tracking.services`` everywhere outside
this package; anything not listed is imported from its submodule. Inside the package, modules
import from their sibling submodules (never from this facade).
"""

from __future__ import annotations

from regression_tracking.services.backup import (
    BackupFormatError,
    BackupWriteError,
    BackupWriter,
    RestoreResult,
    UnknownProjectsError,
    decode_lines,
    read_backup,
    restore_regression_groups,
)
from regression_tracking.services.cleanup import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MIN_AGE,
    MAX_BATCH_SIZE,
    BatchReport,
    CleanupAction,
    CleanupResult,
    StopReason,
    cleanup_orphaned_regressions,
)
from regression_tracking.services.locking import CleanupAlreadyRunning, DetectionLockTimeout
from regression_tracking.services.lookup import (
    MISSING_GROUP_MESSAGE,
    MISSING_ISSUE_GROUP_MESSAGE,
    NOT_FOUND_METRIC,
    bulk_get_groups_from_fingerprints,
    get_group_from_fingerprint,
    get_issue_groups_for_regressions,
    lookup_issue_groups,
)
from regression_tracking.services.orphan_rule import GRACE_PERIOD, OrphanReason
from regression_tracking.services.orphans import (
    Detection,
    Orphan,
    OrphanScope,
    detect_orphans,
    select_orphans,
)
from regression_tracking.services.versioning import (
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
    detect_function_change_points,
    from_breakpoint_data,
    get_regression_groups,
    process_status_change,
    redirect_escalations,
    redirect_resolutions,
    save_regressions_with_versions,
)

__all__ = [
    "BUFFER_PERIOD",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MIN_AGE",
    "ESCALATING_ISSUE_STATES",
    "GRACE_PERIOD",
    "MAX_BATCH_SIZE",
    "MISSING_GROUP_MESSAGE",
    "MISSING_ISSUE_GROUP_MESSAGE",
    "NOT_FOUND_METRIC",
    "ORPHAN_DEACTIVATED_MESSAGE",
    "ORPHAN_TOO_RECENT_MESSAGE",
    "VERSIONING_COMPLETED_MESSAGE",
    "BackupFormatError",
    "BackupWriteError",
    "BackupWriter",
    "BatchReport",
    "BreakpointData",
    "CleanupAction",
    "CleanupAlreadyRunning",
    "CleanupResult",
    "DetectedRegression",
    "Detection",
    "DetectionLockTimeout",
    "Orphan",
    "OrphanReason",
    "OrphanScope",
    "RegressionAction",
    "RegressionOutcome",
    "RestoreResult",
    "SkipReason",
    "StatusChange",
    "StatusChangeProducer",
    "StopReason",
    "TrendCandidate",
    "UnknownProjectsError",
    "bulk_get_groups_from_fingerprints",
    "cleanup_orphaned_regressions",
    "decode_lines",
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
    "save_regressions_with_versions",
    "select_orphans",
]
