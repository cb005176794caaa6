"""The figures of the admin's orphan overview, in three statements whatever the table's size.

Built from the orphan rule (``regression_tracking.orphans``): the orphans are ``is_orphan()``, their
reason ``orphan_reason()``. One grouped statement counts them by reason, type, age bucket and
active (at most 2 x 2 x 5 x 2 rows come back; the breakdowns are summed from them); one more gives
the projects with the most; one counts the regression groups, orphaned or not.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DEFAULT_DB_ALIAS
from django.db.models import Case, Count, IntegerField, OuterRef, Subquery, Value, When
from django.utils import timezone

from regression_tracking.durations import format_duration
from regression_tracking.models import Project, RegressionGroup, RegressionType
from regression_tracking.orphans import is_orphan, orphan_reason
from regression_tracking.services import GRACE_PERIOD, OrphanReason

TOP_PROJECTS = 10


@dataclass(frozen=True, slots=True)
class AgeBucket:
    label: str
    # Orphans added more than ``min_age`` and at most ``max_age`` ago (None: no upper bound); the
    # grace period's edge goes with it, as eligible_orphans has it (date_added < cutoff).
    min_age: timedelta
    max_age: timedelta | None


_GRACE_TEXT = format_duration(GRACE_PERIOD)
# The first bucket is the grace period: what the cleanup leaves alone by default.
AGE_BUCKETS = (
    AgeBucket(f"under {_GRACE_TEXT} (grace period)", timedelta(0), GRACE_PERIOD),
    AgeBucket(f"{_GRACE_TEXT} to 7 days", GRACE_PERIOD, timedelta(days=7)),
    AgeBucket("7 to 30 days", timedelta(days=7), timedelta(days=30)),
    AgeBucket("30 to 90 days", timedelta(days=30), timedelta(days=90)),
    AgeBucket("90 days or more", timedelta(days=90), None),
)


@dataclass(frozen=True, slots=True)
class Figure:
    # What the figure counts, for people (a reason, a type, an age bucket, a project slug).
    label: str
    count: int
    # The value a changelist filter takes for it (a reason, a type's number, a project id).
    key: str


@dataclass(frozen=True, slots=True)
class OrphanOverview:
    as_of: datetime
    regression_groups: int
    orphans: int
    # Active orphans block a new regression issue for their endpoint or function.
    active_orphans: int
    # Orphans past the default grace period: what a default cleanup would act on.
    past_grace_period: int
    by_reason: tuple[Figure, ...]
    by_type: tuple[Figure, ...]
    by_age: tuple[Figure, ...]
    # The projects with the most orphans, most first (ties by project id).
    top_projects: tuple[Figure, ...]


def _age_bucket(now: datetime) -> Case:
    """The index in AGE_BUCKETS of the outer RegressionGroup's age at ``now``."""
    whens = [
        When(date_added__gte=now - bucket.max_age, then=Value(index))
        for index, bucket in enumerate(AGE_BUCKETS)
        if bucket.max_age is not None
    ]
    return Case(*whens, default=Value(len(AGE_BUCKETS) - 1), output_field=IntegerField())


def orphan_overview(*, top: int = TOP_PROJECTS, using: str = DEFAULT_DB_ALIAS) -> OrphanOverview:
    """Orphans by reason, by type, by age bucket, and the ``top`` projects with the most."""
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    now = timezone.now()
    rows = RegressionGroup.objects.using(using)
    orphans = rows.filter(is_orphan())
    grouped = (
        orphans.annotate(orphan_reason=orphan_reason(), age_bucket=_age_bucket(now))
        .values_list("orphan_reason", "type", "age_bucket", "active")
        .annotate(count=Count("id"))
        .order_by()
    )
    by_reason: Counter[str] = Counter()
    by_type: Counter[int] = Counter()
    by_age: Counter[int] = Counter()
    active = 0
    for reason, kind, bucket, is_active, count in grouped:
        by_reason[reason] += count
        by_type[kind] += count
        by_age[bucket] += count
        active += count if is_active else 0
    # The slug by a subquery: a project row may be gone in a real Sentry database.
    top_projects = (
        orphans.values("project_id")
        .annotate(count=Count("id"))
        .order_by("-count", "project_id")
        .annotate(slug=Subquery(Project.objects.filter(id=OuterRef("project_id")).values("slug")))
        .values_list("project_id", "slug", "count")[:top]
    )
    return OrphanOverview(
        as_of=now,
        regression_groups=rows.count(),
        orphans=sum(by_reason.values()),
        active_orphans=active,
        past_grace_period=sum(by_age[index] for index in range(1, len(AGE_BUCKETS))),
        by_reason=tuple(
            Figure(label=str(reason), count=by_reason[reason], key=str(reason))
            for reason in OrphanReason
        ),
        by_type=tuple(
            Figure(label=kind.name.lower(), count=by_type[kind], key=str(kind.value))
            for kind in RegressionType
        ),
        by_age=tuple(
            Figure(label=bucket.label, count=by_age[index], key=str(index))
            for index, bucket in enumerate(AGE_BUCKETS)
        ),
        top_projects=tuple(
            Figure(label=slug or f"project {project_id}", count=count, key=str(project_id))
            for project_id, slug, count in top_projects
        ),
    )
