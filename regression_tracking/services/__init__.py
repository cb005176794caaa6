"""All database logic: the issue lookup, orphan selection and the cleanup.

Commands, the admin and tests call these functions; nothing here prints.
"""

from __future__ import annotations

from regression_tracking.services.lookup import (
    MISSING_GROUP_MESSAGE,
    MISSING_ISSUE_GROUP_MESSAGE,
    NOT_FOUND_METRIC,
    bulk_get_groups_from_fingerprints,
    get_group_from_fingerprint,
    get_issue_groups_for_regressions,
)
from regression_tracking.services.orphans import (
    Orphan,
    OrphanReason,
    OrphanScope,
    count_in_scope,
    orphan_predicate_sql,
    select_orphans,
)

__all__ = [
    "MISSING_GROUP_MESSAGE",
    "MISSING_ISSUE_GROUP_MESSAGE",
    "NOT_FOUND_METRIC",
    "Orphan",
    "OrphanReason",
    "OrphanScope",
    "bulk_get_groups_from_fingerprints",
    "count_in_scope",
    "get_group_from_fingerprint",
    "get_issue_groups_for_regressions",
    "orphan_predicate_sql",
    "select_orphans",
]
