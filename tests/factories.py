"""factory-boy factories for every model, with deterministic Sequence keys."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from regression_tracking.fingerprints import generate_fingerprint, hash_fingerprint
from regression_tracking.models import (
    Group,
    GroupHash,
    Organization,
    Project,
    RegressionGroup,
    RegressionType,
)

FIXED_REGRESSED_AT = datetime(2026, 1, 1, tzinfo=UTC)


class OrganizationFactory(DjangoModelFactory[Organization]):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Organization {n}")
    slug = factory.Sequence(lambda n: f"org-{n}")


class ProjectFactory(DjangoModelFactory[Project]):
    class Meta:
        model = Project

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Project {n}")
    slug = factory.Sequence(lambda n: f"project-{n}")


class GroupFactory(DjangoModelFactory[Group]):
    class Meta:
        model = Group

    project = factory.SubFactory(ProjectFactory)
    message = factory.Sequence(lambda n: f"Endpoint regression {n}")
    culprit = factory.Sequence(lambda n: f"/api/endpoint/{n}/")
    short_id = factory.Sequence(lambda n: n + 1)


class GroupHashFactory(DjangoModelFactory[GroupHash]):
    """A GroupHash whose group is in the same project (group=None makes a hash without one)."""

    class Meta:
        model = GroupHash

    project = factory.SubFactory(ProjectFactory)
    hash = factory.Sequence(lambda n: hashlib.md5(f"fingerprint-{n}".encode()).hexdigest())
    group = factory.SubFactory(GroupFactory, project=factory.SelfAttribute("..project"))


class RegressionGroupFactory(DjangoModelFactory[RegressionGroup]):
    """An endpoint regression with no issue (an orphan until an issue is made for it)."""

    class Meta:
        model = RegressionGroup

    project = factory.SubFactory(ProjectFactory)
    type = RegressionType.ENDPOINT
    fingerprint = factory.Sequence(
        lambda n: generate_fingerprint(RegressionType.ENDPOINT, f"/api/endpoint/{n}/")
    )
    version = 1
    active = True
    date_regressed = FIXED_REGRESSED_AT
    baseline = 100.0
    regressed = 250.0


def issue_hash(regression: RegressionGroup) -> str:
    """The GroupHash.hash under which a regression's issue is stored."""
    return hash_fingerprint([regression.fingerprint])[0]


def create_issue_for(regression: RegressionGroup, **group_fields: Any) -> GroupHash:
    """Create a regression's live issue as the issue platform does: a Group and its GroupHash."""
    group = GroupFactory.create(project=regression.project, **group_fields)
    return GroupHashFactory.create(
        project=regression.project, hash=issue_hash(regression), group=group
    )


def create_grouphash_without_group(regression: RegressionGroup) -> GroupHash:
    """A GroupHash for the regression's key whose issue was discarded (group NULL, tombstone)."""
    return GroupHashFactory.create(
        project=regression.project, hash=issue_hash(regression), group=None, group_tombstone_id=1
    )


def create_linked_regression(**fields: Any) -> RegressionGroup:
    """A RegressionGroup with its live issue (the matching GroupHash and Group)."""
    regression = RegressionGroupFactory.create(**fields)
    create_issue_for(regression)
    return regression


def create_old_orphan(**fields: Any) -> RegressionGroup:
    """An orphan added two days ago: past the default 24 h grace period."""
    return RegressionGroupFactory.create(date_added=timezone.now() - timedelta(days=2), **fields)


@dataclass
class OrphanWorld:
    """One project holding each case the cleanup tells apart."""

    linked: RegressionGroup
    old_active: RegressionGroup
    old_inactive: RegressionGroup
    discarded: RegressionGroup
    recent: RegressionGroup

    @property
    def all(self) -> list[RegressionGroup]:
        return [self.linked, self.old_active, self.old_inactive, self.discarded, self.recent]


def create_orphan_world() -> OrphanWorld:
    project = ProjectFactory.create()
    linked = create_linked_regression(
        project=project, date_added=timezone.now() - timedelta(days=9)
    )
    old_active = create_old_orphan(project=project)
    old_inactive = create_old_orphan(project=project, active=False)
    discarded = create_old_orphan(project=project)
    create_grouphash_without_group(discarded)
    recent = RegressionGroupFactory.create(
        project=project, date_added=timezone.now() - timedelta(hours=1)
    )
    return OrphanWorld(linked, old_active, old_inactive, discarded, recent)
