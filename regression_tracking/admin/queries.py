"""Selectors behind the admin: RegressionGroups' issue links, the issue filter, selection cleanup.

Everything here is set-based: the changelist's issue columns are correlated subqueries of its one
list query (``(project_id, md5(fingerprint))`` → GroupHash → Group, the orphan rule), and the issue
filter is ``EXISTS`` / ``NOT EXISTS`` inside that same query. Acting on a selection goes through
``cleanup_orphaned_regressions``, so the race rule and the grace period hold for the admin too.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, TypedDict

from django.db import DEFAULT_DB_ALIAS
from django.db.models import F, QuerySet, Subquery, TextChoices

from regression_tracking.models import RegressionGroup
from regression_tracking.orphans import (
    IssueHash,
    has_live_group,
    is_live_grouphash,
    is_orphan,
    is_orphan_with_reason,
    issue_key_grouphashes,
)
from regression_tracking.services import (
    GRACE_PERIOD,
    CleanupAction,
    OrphanReason,
    OrphanScope,
    cleanup_orphaned_regressions,
)

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class IssueLinks(TypedDict):
    # md5 of the fingerprint: the GroupHash.hash the regression's issue is stored under.
    issue_hash: str
    # The Group of the live GroupHash; None for an orphan.
    issue_group_id: int | None
    # The GroupHash with the issue key, live or not; None when the key has no GroupHash.
    issue_grouphash_id: int | None


if TYPE_CHECKING:
    RegressionGroupWithIssue = WithAnnotations[RegressionGroup, IssueLinks]


class IssueState(TextChoices):
    LINKED = "linked", "Linked"
    ORPHAN = "orphan", "Orphan (any reason)"
    MISSING_GROUPHASH = OrphanReason.MISSING_GROUPHASH.value, "Orphan (missing grouphash)"
    GROUPHASH_WITHOUT_GROUP = (
        OrphanReason.GROUPHASH_WITHOUT_GROUP.value,
        "Orphan (grouphash without group)",
    )


def with_issue_links(
    queryset: QuerySet[RegressionGroup],
) -> QuerySet[RegressionGroupWithIssue]:
    """``queryset`` with the IssueLinks columns, computed in the same statement."""
    key = issue_key_grouphashes()
    return queryset.annotate(
        issue_hash=IssueHash(F("fingerprint")),
        issue_group_id=Subquery(key.filter(is_live_grouphash()).values("group_id")[:1]),
        issue_grouphash_id=Subquery(key.values("id")[:1]),
    )


def filter_by_issue_state(
    queryset: QuerySet[RegressionGroup], state: IssueState
) -> QuerySet[RegressionGroup]:
    """The rows of ``queryset`` in ``state``, by the orphan rule and its reasons."""
    if state == IssueState.LINKED:
        return queryset.filter(has_live_group())
    if state == IssueState.ORPHAN:
        return queryset.filter(is_orphan())
    return queryset.filter(is_orphan_with_reason(OrphanReason(state.value)))


class SelectionOutcome(enum.StrEnum):
    """What happened to each selected row; every selected id gets exactly one."""

    ACTED = "acted"
    # It has a live group: not an orphan.
    LINKED = "linked"
    # An orphan inside the grace period.
    TOO_RECENT = "too_recent"
    # Deactivate only: an orphan that is already inactive.
    ALREADY_INACTIVE = "already_inactive"
    # Another transaction kept the rows locked through every attempt.
    LOCKED = "locked"
    # Eligible when selected, not when written: an issue appeared (the race rule) or another run
    # got there first.
    CHANGED_MEANWHILE = "changed_meanwhile"
    # Deleted before the action ran.
    GONE = "gone"


@dataclass(frozen=True, slots=True)
class SelectionCleanup:
    action: CleanupAction
    selected: int
    min_age: timedelta
    counts: dict[SelectionOutcome, int]

    @property
    def acted(self) -> int:
        return self.counts[SelectionOutcome.ACTED]

    @property
    def left_alone(self) -> int:
        return self.selected - self.acted


def cleanup_selected_orphans(
    *,
    action: CleanupAction,
    ids: tuple[int, ...],
    min_age: timedelta = GRACE_PERIOD,
    using: str = DEFAULT_DB_ALIAS,
) -> SelectionCleanup:
    """Delete or deactivate the selected rows that are orphans older than ``min_age``.

    The cleanup service does the work (its advisory lock, batches and race rule included); the
    counts all come from its one result (one detection statement, then the batches), so they add
    up to the selection. A selected id the detection did not see is GONE. Raises
    ``CleanupAlreadyRunning``.
    """
    result = cleanup_orphaned_regressions(
        action=action, scope=OrphanScope(ids=tuple(sorted(set(ids)))), min_age=min_age, using=using
    )
    selected = len(set(ids))
    # The result's counts nest: scanned ⊇ orphaned ⊇ (too_recent, inactive, eligible), and
    # eligible = acted + locked + changed meanwhile.
    old_enough = result.orphaned - result.too_recent
    counts = {
        SelectionOutcome.ACTED: result.acted,
        SelectionOutcome.LINKED: result.scanned - result.orphaned,
        SelectionOutcome.TOO_RECENT: result.too_recent,
        SelectionOutcome.ALREADY_INACTIVE: old_enough - result.eligible,
        SelectionOutcome.LOCKED: result.skipped,
        SelectionOutcome.CHANGED_MEANWHILE: result.changed_meanwhile,
        SelectionOutcome.GONE: selected - result.scanned,
    }
    return SelectionCleanup(action=action, selected=selected, min_age=min_age, counts=counts)
