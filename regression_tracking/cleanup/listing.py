"""A bounded listing of orphans, for an operator to read before acting.

Built from the orphan rule (``orphans``): the rows are ``eligible_orphans`` of the
given queryset (or every orphan when no cutoff is given), the reason is ``orphan_reason()``. Two
statements whatever the table's size: the first ``limit`` rows in id order (``LIMIT`` in SQL) and
the count of all of them, so a caller can say how many were left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DEFAULT_DB_ALIAS
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from regression_tracking.models import Project, RegressionGroup, RegressionType
from regression_tracking.orphans import (
    OrphanReason,
    eligible_orphans,
    is_orphan,
    orphan_reason,
)

DEFAULT_LIST_LIMIT = 100
# The listing is for reading; the ids of a longer one would not fit one statement comfortably.
MAX_LIST_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class ListedOrphan:
    id: int
    project_id: int
    # None when the project has no slug, or no row any more (upstream keeps a bare project_id).
    project_slug: str | None
    type: RegressionType
    fingerprint: str
    reason: OrphanReason
    date_added: datetime
    active: bool
    # How long ago the row was added, as of the listing.
    age: timedelta


@dataclass(frozen=True, slots=True)
class OrphanListing:
    orphans: tuple[ListedOrphan, ...]
    # Every orphan the listing covers, listed or not.
    total: int
    # When the listing was read: ages are measured from it.
    as_of: datetime

    @property
    def left_out(self) -> int:
        return self.total - len(self.orphans)


def list_orphans(
    queryset: QuerySet[RegressionGroup] | None = None,
    *,
    cutoff: datetime | None,
    active_only: bool = False,
    limit: int = DEFAULT_LIST_LIMIT,
    using: str = DEFAULT_DB_ALIAS,
) -> OrphanListing:
    """The first ``limit`` orphans of ``queryset`` in id order, and how many there are.

    With ``cutoff``, only the orphans a cleanup would act on: ``eligible_orphans`` (older than
    ``cutoff``, and active if ``active_only``). Without, every orphan of any age. Two queries.
    """
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}")
    rows = (queryset if queryset is not None else RegressionGroup.objects.all()).using(using)
    if cutoff is not None:
        orphans = eligible_orphans(rows, cutoff=cutoff, active_only=active_only)
    else:
        orphans = rows.filter(is_orphan())
        if active_only:
            orphans = orphans.filter(active=True)
    as_of = timezone.now()
    # The slug by a subquery, not a join: a RegressionGroup whose project row is gone (a real
    # Sentry database has no foreign key) is still listed.
    page = (
        orphans.annotate(
            orphan_reason=orphan_reason(),
            project_slug=Subquery(Project.objects.filter(id=OuterRef("project_id")).values("slug")),
        )
        .order_by("id")
        .values_list(
            "id",
            "project_id",
            "project_slug",
            "type",
            "fingerprint",
            "orphan_reason",
            "date_added",
            "active",
        )[:limit]
    )
    listed = tuple(
        ListedOrphan(
            id=row_id,
            project_id=project_id,
            project_slug=slug,
            type=RegressionType(kind),
            fingerprint=fingerprint,
            reason=OrphanReason(reason),
            date_added=added,
            active=active,
            age=as_of - added,
        )
        for row_id, project_id, slug, kind, fingerprint, reason, added, active in page
    )
    total = len(listed) if len(listed) < limit else orphans.order_by().count()
    return OrphanListing(orphans=listed, total=total, as_of=as_of)
