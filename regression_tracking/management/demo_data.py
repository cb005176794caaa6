"""A small demo dataset: every kind of regression the cleanup tells apart."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DEFAULT_DB_ALIAS, connections, transaction
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
# The demo's mark: only an organization with this slug *and* this name was loaded here, and only
# that one is ever replaced.
DEMO_ORGANIZATION_NAME = "Demo (regression_tracking load_demo_data)"
# Tables a database made by ``migrate`` holds besides the models' own.
_MIGRATE_TABLES = frozenset({"django_migrations"})
# How many names an error message lists.
_SHOWN = 5


class DemoRefused(ValueError):
    """The database holds data the demo did not create: loading would mix with (or delete) it."""


def _shown(names: list[str]) -> str:
    return ", ".join(names[:_SHOWN]) + (
        f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    )


def _check_demo_database(*, replace: bool, using: str) -> bool:
    """Whether the demo is loaded; ``DemoRefused`` when the database holds anything else."""
    introspection = connections[using].introspection
    foreign_tables = sorted(
        set(introspection.table_names())
        - set(introspection.django_table_names(only_existing=True, include_views=True))
        - _MIGRATE_TABLES
    )
    if foreign_tables:
        raise DemoRefused(
            "the database has tables this project did not create (a Sentry database?): "
            f"{_shown(foreign_tables)}; load the demo into a database of its own"
        )
    organizations = Organization.objects.using(using)
    others = sorted(
        organizations.exclude(slug=DEMO_ORGANIZATION_SLUG, name=DEMO_ORGANIZATION_NAME).values_list(
            "slug", flat=True
        )
    )
    if others:
        raise DemoRefused(
            f"the database holds organizations the demo did not load: {_shown(others)}; "
            "load the demo into a database of its own"
        )
    loaded = organizations.filter(slug=DEMO_ORGANIZATION_SLUG).exists()
    if loaded and not replace:
        raise DemoRefused("the demo organization is loaded already; --replace loads it afresh")
    return loaded


@dataclass(frozen=True, slots=True)
class DemoSummary:
    projects: int
    regression_groups: int
    grouphashes: int


class _DemoRows:
    """Creates the demo's rows in one database: regressions, and issues for them."""

    def __init__(self, *, using: str, now: datetime) -> None:
        self.using = using
        self.now = now
        self.short_ids = iter(range(1, 100))

    def regression(
        self,
        project: Project,
        regression_type: RegressionType,
        name: str | int,
        *,
        version: int = 1,
        active: bool = True,
        added: datetime | None = None,
    ) -> RegressionGroup:
        added = added or self.now - timedelta(days=3)
        return RegressionGroup.objects.using(self.using).create(
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

    def issue(self, regression: RegressionGroup, *, discarded: bool = False) -> GroupHash:
        group = None
        if not discarded:
            group = Group.objects.using(self.using).create(
                project=regression.project,
                message=f"Regression: {regression.fingerprint}",
                short_id=next(self.short_ids),
            )
        return GroupHash.objects.using(self.using).create(
            project=regression.project,
            hash=hash_fingerprint([regression.fingerprint])[0],
            group=group,
            group_tombstone_id=1 if discarded else None,
        )


def _create_demo_rows(rows: _DemoRows, backend: Project, frontend: Project) -> None:
    endpoint, function = RegressionType.ENDPOINT, RegressionType.FUNCTION
    # Linked: a regression and its live issue, plus an old inactive version sharing it.
    rows.regression(backend, endpoint, "/api/checkout", version=1, active=False)
    rows.issue(rows.regression(backend, endpoint, "/api/checkout", version=2))
    rows.issue(rows.regression(backend, function, 3735928559))
    rows.issue(rows.regression(backend, endpoint, "/api/health"))
    # Orphans: the issue was never created (an inactive old version too) ...
    rows.regression(backend, endpoint, "/api/search", version=1, active=False)
    rows.regression(backend, endpoint, "/api/search", version=2)
    # ... deleted with its GroupHash ...
    deleted = rows.issue(rows.regression(frontend, endpoint, "/checkout"))
    assert deleted.group is not None
    deleted.group.delete()
    # ... discarded (GroupHash kept, group NULL) ...
    rows.issue(rows.regression(frontend, function, 48879), discarded=True)
    # ... the same endpoint as a linked one, but in another project ...
    rows.regression(frontend, endpoint, "/api/health")
    # ... and one so recent its issue may still be on its way.
    rows.regression(frontend, endpoint, "/api/new", added=rows.now - timedelta(hours=1))


def load_demo_data(*, replace: bool = False, using: str = DEFAULT_DB_ALIAS) -> DemoSummary:
    """Load the demo organization into a database that holds nothing else.

    Refuses (``DemoRefused``, nothing changed) a database with tables or organizations the demo did
    not create, and one where the demo is loaded already unless ``replace``: then only the demo's
    own organization (its slug and its mark) is deleted and loaded afresh.
    """
    with transaction.atomic(using=using):
        if _check_demo_database(replace=replace, using=using):
            Organization.objects.using(using).filter(
                slug=DEMO_ORGANIZATION_SLUG, name=DEMO_ORGANIZATION_NAME
            ).delete()
        organization = Organization.objects.using(using).create(
            name=DEMO_ORGANIZATION_NAME, slug=DEMO_ORGANIZATION_SLUG
        )
        backend, frontend = (
            Project.objects.using(using).create(organization=organization, slug=slug, name=name)
            for slug, name in (("backend", "Backend"), ("frontend", "Frontend"))
        )
        _create_demo_rows(_DemoRows(using=using, now=timezone.now()), backend, frontend)

    regressions = RegressionGroup.objects.using(using).filter(project__organization=organization)
    return DemoSummary(
        projects=2,
        regression_groups=regressions.count(),
        grouphashes=GroupHash.objects.using(using)
        .filter(project__organization=organization)
        .count(),
    )
