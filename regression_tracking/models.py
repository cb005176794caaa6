"""Sentry's models for regression tracking, mirrored table for table and column for column.

Each model keeps Sentry's table name and the column names and types of ``sentry_schema.sql``, so it
can read a real Sentry database. Only the columns this project needs are modelled. No logic lives
here: the orphan rule is in ``orphans.py``, the lookup in ``issues/``, the cleanup in ``cleanup/``.
"""

from __future__ import annotations

import logging

from django.db import models
from django.db.models import F
from django.db.models.functions import MD5
from django.utils import timezone

# The values PostgreSQL's bigint (the ids' type; SQLite's integer alike) can hold.
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1


class GroupStatus(models.IntegerChoices):
    UNRESOLVED = 0
    RESOLVED = 1
    IGNORED = 2
    PENDING_DELETION = 3
    DELETION_IN_PROGRESS = 4
    PENDING_MERGE = 5
    REPROCESSING = 6


class GroupSubStatus(models.IntegerChoices):
    UNTIL_ESCALATING = 1
    ESCALATING = 2
    ONGOING = 3
    UNTIL_CONDITION_MET = 4
    FOREVER = 5
    REGRESSED = 6
    NEW = 7


class RegressionType(models.IntegerChoices):
    ENDPOINT = 0
    FUNCTION = 1


class GroupHashState(models.IntegerChoices):
    LOCKED_IN_MIGRATION = 1


class Organization(models.Model):
    name = models.CharField(max_length=64)
    slug = models.SlugField(max_length=50, unique=True)
    # Sentry's OrganizationStatus: 0 is ACTIVE.
    status = models.PositiveIntegerField(default=0)
    date_added = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "sentry_organization"

    def __str__(self) -> str:
        return self.slug


class Project(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE)
    # Sentry allows NULL here, so the model must too.
    slug = models.SlugField(max_length=100, null=True)  # noqa: DJ001
    name = models.CharField(max_length=200)
    # Sentry's ObjectStatus: 0 is ACTIVE.
    status = models.PositiveIntegerField(default=0, db_index=True)
    date_added = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "sentry_project"
        unique_together = (("organization", "slug"),)

    def __str__(self) -> str:
        return self.slug or f"project {self.pk}"


class Group(models.Model):
    """An issue (Sentry's ``sentry_groupedmessage``)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE)
    logger = models.CharField(max_length=64, blank=True, default="")
    # A Python logging level; Sentry defaults to ERROR.
    level = models.PositiveIntegerField(default=logging.ERROR, blank=True)
    message = models.TextField()
    # What caused the issue (a regression's transaction or function); Sentry's column is `view`,
    # nullable there.
    culprit = models.CharField(max_length=200, blank=True, null=True, db_column="view")  # noqa: DJ001
    status = models.PositiveIntegerField(
        default=GroupStatus.UNRESOLVED, choices=GroupStatus.choices, db_index=True
    )
    # Refines `status` (e.g. IGNORED until escalating); NULL when the status has none.
    substatus = models.IntegerField(null=True, choices=GroupSubStatus.choices)
    times_seen = models.PositiveIntegerField(default=1)
    last_seen = models.DateTimeField(default=timezone.now, db_index=True)
    first_seen = models.DateTimeField(default=timezone.now, db_index=True)
    resolved_at = models.DateTimeField(null=True)
    # When the issue last became active (unresolved) again.
    active_at = models.DateTimeField(null=True)
    # The number in the short id (e.g. PROJ-42), unique within a project.
    short_id = models.BigIntegerField(null=True)
    # The issue platform's group type id (1 is an error; performance regressions have their own).
    type = models.PositiveIntegerField(default=1, db_index=True)

    class Meta:
        db_table = "sentry_groupedmessage"
        unique_together = (("project", "short_id"),)

    def __str__(self) -> str:
        return f"group {self.pk}"


class GroupHash(models.Model):
    """Links a fingerprint hash of a project to the issue (Group) it belongs to."""

    # NULL only for rows Sentry keeps for hashes that belong to no project.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, null=True)
    # md5 hex digest of one fingerprint part (see fingerprints.hash_fingerprint).
    hash = models.CharField(max_length=32)
    # NULL when the issue was discarded or is not created yet: such a hash resolves to no issue.
    group = models.ForeignKey(Group, on_delete=models.CASCADE, null=True)
    # Set when the issue was discarded: the tombstone that now swallows its events.
    group_tombstone_id = models.PositiveIntegerField(null=True)
    # GroupHashState, or NULL for a hash in normal use.
    state = models.PositiveIntegerField(null=True, choices=GroupHashState.choices)

    class Meta:
        db_table = "sentry_grouphash"
        unique_together = (("project", "hash"),)

    def __str__(self) -> str:
        return self.hash


class RegressionGroup(models.Model):
    """One detected performance regression (a version of an endpoint or function's regression).

    Its issue is found only through ``(project_id, md5(fingerprint))`` → GroupHash → Group; there is
    no foreign key to Group. Upstream keeps ``project_id`` as a bare integer; here it is a real
    foreign key on the same column.
    """

    date_added = models.DateTimeField(default=timezone.now)
    date_updated = models.DateTimeField(default=timezone.now)
    # When the regression started (the breakpoint the detector found).
    date_regressed = models.DateTimeField()
    # When this version stopped being active; NULL while it is active.
    date_resolved = models.DateTimeField(null=True)
    # Starts at 1 and grows by one each time the same fingerprint regresses again.
    version = models.IntegerField()
    # Only the active version of a fingerprint blocks a new regression issue.
    active = models.BooleanField(default=True)
    project = models.ForeignKey(Project, on_delete=models.CASCADE)
    type = models.IntegerField(choices=RegressionType.choices)
    # Endpoint: sha1 hex of the transaction; function: the function id in hex (fingerprints.py).
    fingerprint = models.CharField(max_length=64)
    # The p95 duration before and after the breakpoint.
    baseline = models.FloatField()
    regressed = models.FloatField()

    class Meta:
        db_table = "sentry_regressiongroup"
        unique_together = (("type", "project", "fingerprint", "version"),)
        indexes = (
            models.Index(fields=("type", "project", "fingerprint", "active")),
            # Not upstream's: the issue key of a RegressionGroup, (project_id, md5(fingerprint)),
            # so the lookup finds the RegressionGroups of a missing hash by an index probe instead
            # of hashing every fingerprint of the project (benchmarks.detector_view measures the
            # lookup with and without it).
            models.Index(F("project"), MD5("fingerprint"), name="regressiongroup_issue_key_idx"),
        )

    def __str__(self) -> str:
        return f"regression group {self.pk}"
