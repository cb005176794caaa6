"""The figures of the admin's orphan overview: the cleanup's detection census, with a breakdown.

One pass over the table, the dry run's (``detect_orphans``: the same join of the rows on GroupHash
by the issue key, one statement per id range), asked to count the orphans by reason, type, age
bucket, active and project instead of collecting their ids; then the slugs of the projects with
the most. So the overview's figures are the dry run's: its rows scanned, orphans by reason and too
recent ones are the same census's.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DEFAULT_DB_ALIAS
from django.utils import timezone

from regression_tracking.durations import format_duration
from regression_tracking.models import Project, RegressionType
from regression_tracking.services import GRACE_PERIOD, OrphanBreakdown, OrphanReason, detect_orphans

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


def orphan_overview(*, top: int = TOP_PROJECTS, using: str = DEFAULT_DB_ALIAS) -> OrphanOverview:
    """Orphans by reason, by type, by age bucket, and the ``top`` projects with the most."""
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    now = timezone.now()
    # The census's cutoff is the first bucket's edge (the grace period): its too recent orphans
    # are that bucket, and the buckets after it are the census's age buckets.
    first, *later = AGE_BUCKETS
    assert first.max_age is not None
    edges = tuple(now - bucket.max_age for bucket in later if bucket.max_age is not None)
    detection = detect_orphans(cutoff=now - first.max_age, breakdown=edges, using=using)
    breakdown = detection.breakdown
    assert isinstance(breakdown, OrphanBreakdown)
    by_type: Counter[RegressionType] = Counter()
    by_age: Counter[int] = Counter()
    active = 0
    for key, count in breakdown.counts.items():
        by_type[key.type] += count
        by_age[key.age_bucket] += count
        active += count if key.active else 0
    most = sorted(breakdown.by_project.items(), key=lambda item: (-item[1], item[0]))[:top]
    # The slugs by id: a project row may be gone in a real Sentry database.
    slugs = (
        dict(
            Project.objects.using(using)
            .filter(id__in=[project_id for project_id, _count in most])
            .values_list("id", "slug")
        )
        if most
        else {}
    )
    return OrphanOverview(
        as_of=now,
        regression_groups=detection.scanned,
        orphans=detection.orphaned,
        active_orphans=active,
        past_grace_period=detection.orphaned - detection.too_recent,
        by_reason=tuple(
            Figure(label=str(reason), count=detection.by_reason[reason], key=str(reason))
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
            Figure(
                label=slugs.get(project_id) or f"project {project_id}",
                count=count,
                key=str(project_id),
            )
            for project_id, count in most
        ),
    )
