from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, models, transaction

from regression_tracking.models import (
    Group,
    GroupHash,
    GroupStatus,
    GroupSubStatus,
    Project,
    RegressionGroup,
    RegressionType,
)
from tests.factories import (
    GroupFactory,
    GroupHashFactory,
    ProjectFactory,
    RegressionGroupFactory,
    create_linked_regression,
    issue_hash,
)

pytestmark = pytest.mark.django_db


def test_enums_carry_sentrys_values() -> None:
    assert {s.name: s.value for s in GroupStatus} == {
        "UNRESOLVED": 0,
        "RESOLVED": 1,
        "IGNORED": 2,
        "PENDING_DELETION": 3,
        "DELETION_IN_PROGRESS": 4,
        "PENDING_MERGE": 5,
        "REPROCESSING": 6,
    }
    assert {s.name: s.value for s in GroupSubStatus} == {
        "UNTIL_ESCALATING": 1,
        "ESCALATING": 2,
        "ONGOING": 3,
        "UNTIL_CONDITION_MET": 4,
        "FOREVER": 5,
        "REGRESSED": 6,
        "NEW": 7,
    }
    assert {t.name: t.value for t in RegressionType} == {"ENDPOINT": 0, "FUNCTION": 1}


def test_tables_and_columns_have_sentrys_names() -> None:
    assert Group._meta.db_table == "sentry_groupedmessage"
    assert Group._meta.get_field("culprit").column == "view"
    assert GroupHash._meta.db_table == "sentry_grouphash"
    assert RegressionGroup._meta.db_table == "sentry_regressiongroup"
    assert RegressionGroup._meta.get_field("project").column == "project_id"


def test_defaults_match_upstream() -> None:
    group = GroupFactory.create()
    group.refresh_from_db()
    assert (group.status, group.substatus, group.times_seen, group.level, group.type) == (
        GroupStatus.UNRESOLVED,
        None,
        1,
        40,
        1,
    )
    regression = RegressionGroupFactory.create()
    regression.refresh_from_db()
    assert regression.active is True
    assert regression.date_resolved is None


def test_group_hash_factory_group_shares_its_project() -> None:
    grouphash = GroupHashFactory.create()
    assert grouphash.group is not None
    assert grouphash.group.project_id == grouphash.project_id


def test_linked_regression_has_a_live_issue() -> None:
    regression = create_linked_regression()
    grouphash = GroupHash.objects.get(project=regression.project, hash=issue_hash(regression))
    assert grouphash.group is not None
    assert grouphash.group.project_id == regression.project_id


def _save_and_check_constraints(instance: models.Model) -> None:
    with transaction.atomic():
        instance.save()
        # Sentry's foreign keys are DEFERRABLE INITIALLY DEFERRED: check them now.
        connection.check_constraints()


class TestForeignKeys:
    def test_deleting_a_group_removes_its_grouphashes(self) -> None:
        grouphash = GroupHashFactory.create()
        other = GroupHashFactory.create()
        assert grouphash.group is not None
        grouphash.group.delete()
        assert list(GroupHash.objects.values_list("id", flat=True)) == [other.id]

    def test_deleting_a_project_removes_its_groups_hashes_and_regressions(self) -> None:
        kept = create_linked_regression()
        doomed = create_linked_regression()
        RegressionGroupFactory.create(project=doomed.project)
        doomed.project.delete()
        assert list(RegressionGroup.objects.values_list("id", flat=True)) == [kept.id]
        assert set(Group.objects.values_list("project_id", flat=True)) == {kept.project_id}
        assert set(GroupHash.objects.values_list("project_id", flat=True)) == {kept.project_id}
        assert list(Project.objects.values_list("id", flat=True)) == [kept.project_id]

    def test_deleting_an_organization_removes_its_projects(self) -> None:
        regression = create_linked_regression()
        regression.project.organization.delete()
        assert not Project.objects.exists()
        assert not RegressionGroup.objects.exists()

    def test_grouphash_pointing_at_a_missing_group_is_an_integrity_error(self) -> None:
        project = ProjectFactory.create()
        with pytest.raises(IntegrityError):
            _save_and_check_constraints(
                GroupHash(project=project, hash="0" * 32, group_id=987654321)
            )

    def test_regression_pointing_at_a_missing_project_is_an_integrity_error(self) -> None:
        with pytest.raises(IntegrityError):
            _save_and_check_constraints(RegressionGroupFactory.build(project_id=987654321))


class TestUniqueConstraints:
    def test_grouphash_is_unique_per_project_and_hash(self) -> None:
        grouphash = GroupHashFactory.create()
        GroupHashFactory.create(hash=grouphash.hash)  # the same hash in another project is fine
        with pytest.raises(IntegrityError), transaction.atomic():
            GroupHashFactory.create(project=grouphash.project, hash=grouphash.hash)

    def test_regression_is_unique_per_type_project_fingerprint_and_version(self) -> None:
        regression = RegressionGroupFactory.create()
        RegressionGroupFactory.create(
            project=regression.project, fingerprint=regression.fingerprint, version=2
        )
        RegressionGroupFactory.create(
            project=regression.project,
            fingerprint=regression.fingerprint,
            type=RegressionType.FUNCTION,
        )
        with pytest.raises(IntegrityError), transaction.atomic():
            RegressionGroupFactory.create(
                project=regression.project, fingerprint=regression.fingerprint, version=1
            )

    def test_project_slug_is_unique_per_organization(self) -> None:
        project = ProjectFactory.create()
        ProjectFactory.create(slug=project.slug)  # another organization
        with pytest.raises(IntegrityError), transaction.atomic():
            ProjectFactory.create(organization=project.organization, slug=project.slug)

    def test_group_short_id_is_unique_per_project(self) -> None:
        group = GroupFactory.create()
        GroupFactory.create(short_id=group.short_id)  # another project
        with pytest.raises(IntegrityError), transaction.atomic():
            GroupFactory.create(project=group.project, short_id=group.short_id)


def test_regression_index_has_upstreams_name() -> None:
    names = [index.name for index in RegressionGroup._meta.indexes]
    # Upstream's index, then this project's issue-key index (not upstream's; PORTING.md says so).
    assert names == ["sentry_regr_type_3a29e7_idx", "regressiongroup_issue_key_idx"]
