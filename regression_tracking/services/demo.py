"""A small demo dataset: every kind of regression the cleanup tells apart."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils import timezone

from regression_tracking.fingerprints import generate_fingerprint, hash_fingerprint
from regression_tracking.models import (
    Group,
    GroupHash,
    Organization,
    Project,
    RegressionGroup,
    RegressionType,
)

DEMO_ORGANIZATION_SLUG = "demo"


@dataclass(frozen=True, slots=True)
class DemoSummary:
    projects: int
    regression_groups: int
    grouphashes: int


def load_demo_data(*, using: str = DEFAULT_DB_ALIAS) -> DemoSummary:
    """Replace the demo organization with a fresh copy of the demo dataset (idempotent)."""
    now = timezone.now()
    three_days_ago = now - timedelta(days=3)
    with transaction.atomic(using=using):
        Organization.objects.using(using).filter(slug=DEMO_ORGANIZATION_SLUG).delete()
        organization = Organization.objects.using(using).create(
            name="Demo", slug=DEMO_ORGANIZATION_SLUG
        )
        backend, frontend = (
            Project.objects.using(using).create(organization=organization, slug=slug, name=name)
            for slug, name in (("backend", "Backend"), ("frontend", "Frontend"))
        )
        short_ids = iter(range(1, 100))

        def regression(
            project: Project,
            regression_type: RegressionType,
            name: str | int,
            *,
            version: int = 1,
            active: bool = True,
            added: datetime = three_days_ago,
        ) -> RegressionGroup:
            return RegressionGroup.objects.using(using).create(
                project=project,
                type=regression_type,
                fingerprint=generate_fingerprint(regression_type, name),
                version=version,
                active=active,
                date_added=added,
                date_updated=added,
                date_regressed=added,
                date_resolved=None if active else added + timedelta(hours=1),
                baseline=120.0,
                regressed=480.0,
            )

        def issue(regression: RegressionGroup, *, discarded: bool = False) -> GroupHash:
            group = None
            if not discarded:
                group = Group.objects.using(using).create(
                    project=regression.project,
                    message=f"Regression: {regression.fingerprint}",
                    short_id=next(short_ids),
                )
            return GroupHash.objects.using(using).create(
                project=regression.project,
                hash=hash_fingerprint([regression.fingerprint])[0],
                group=group,
                group_tombstone_id=1 if discarded else None,
            )

        endpoint, function = RegressionType.ENDPOINT, RegressionType.FUNCTION
        # Linked: a regression and its live issue, plus an old inactive version sharing it.
        regression(backend, endpoint, "/api/checkout", version=1, active=False)
        issue(regression(backend, endpoint, "/api/checkout", version=2))
        issue(regression(backend, function, 3735928559))
        issue(regression(backend, endpoint, "/api/health"))
        # Orphans: the issue was never created (an inactive old version too) ...
        regression(backend, endpoint, "/api/search", version=1, active=False)
        regression(backend, endpoint, "/api/search", version=2)
        # ... deleted with its GroupHash ...
        deleted = issue(regression(frontend, endpoint, "/checkout"))
        assert deleted.group is not None
        deleted.group.delete()
        # ... discarded (GroupHash kept, group NULL) ...
        issue(regression(frontend, function, 48879), discarded=True)
        # ... the same endpoint as a linked one, but in another project ...
        regression(frontend, endpoint, "/api/health")
        # ... and one so recent its issue may still be on its way.
        regression(frontend, endpoint, "/api/new", added=now - timedelta(hours=1))

    regressions = RegressionGroup.objects.using(using).filter(project__organization=organization)
    return DemoSummary(
        projects=2,
        regression_groups=regressions.count(),
        grouphashes=GroupHash.objects.using(using)
        .filter(project__organization=organization)
        .count(),
    )
