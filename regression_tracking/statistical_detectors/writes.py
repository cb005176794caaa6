"""The two statements that end an active version, shared by the breakpoint and trend paths."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from regression_tracking.models import RegressionGroup
from regression_tracking.orphans import eligible_orphans, lock_rows


def _changed(ids: Collection[int], updated: int, *, now: datetime) -> set[int]:
    """The ids of ``ids`` that the UPDATE just made inactive at ``now``.

    ``update()`` returns only a count: when it is every id (the usual case) no statement is
    needed; otherwise one reads back the rows this transaction stamped with ``now``.
    """
    if updated == len(ids):
        return set(ids)
    if updated == 0:
        return set()
    return set(
        RegressionGroup.objects.filter(id__in=ids, active=False, date_resolved=now).values_list(
            "id", flat=True
        )
    )


def close_active_versions(ids: Collection[int], *, now: datetime) -> set[int]:
    """Make the still-active rows of ``ids`` inactive; returns the ids this statement changed."""
    if not ids:
        return set()
    updated = RegressionGroup.objects.filter(id__in=ids, active=True).update(
        active=False, date_resolved=now, date_updated=now
    )
    return _changed(ids, updated, now=now)


def deactivate_orphaned_versions(
    ids: Collection[int], *, now: datetime, cutoff: datetime
) -> set[int]:
    """Deactivate the rows of ``ids`` that are still active orphans older than ``cutoff``.

    Built from ``eligible_orphans``, so the UPDATE re-states the orphan predicate and the cutoff
    (the race rule): a GroupHash committed before it runs keeps its row active. The rows are
    locked first (``lock_rows``), so the UPDATE decides on a snapshot taken after the lock: a
    GroupHash committed while this waited on another transaction's row lock keeps its row too.
    Runs inside the caller's transaction, which holds the locks until it commits.
    """
    if not ids:
        return set()
    locked = lock_rows(RegressionGroup.objects.filter(id__in=ids))
    if not locked:
        return set()
    candidates = RegressionGroup.objects.filter(id__in=locked)
    updated = eligible_orphans(candidates, cutoff=cutoff, active_only=True).update(
        active=False, date_resolved=now, date_updated=now
    )
    return _changed(ids, updated, now=now)
