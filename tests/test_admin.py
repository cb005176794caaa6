from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import get_messages
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from regression_tracking import admin as admin_module
from regression_tracking.admin.queries import IssueState, filter_by_issue_state
from regression_tracking.cleanup import run as cleanup_module
from regression_tracking.cleanup.locking import CLEANUP_LOCK_CLASS
from regression_tracking.models import Group, GroupHash, RegressionGroup, RegressionType
from regression_tracking.services import detect_orphans
from tests.factories import (
    GroupFactory,
    GroupHashFactory,
    OrganizationFactory,
    ProjectFactory,
    RegressionGroupFactory,
    create_grouphash_without_group,
    create_issue_for,
    create_linked_regression,
    create_old_orphan,
    issue_hash,
)
from tests.utils import select_orphans

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/regression_tracking/regressiongroup/"
# Session, user, COUNT(*), the list query: the same for any number of rows and any filter.
CHANGELIST_QUERIES = 4


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings: Any) -> None:
    """admin_client's user gets a password: hash it in microseconds, not half a second."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def change_url(obj: Any) -> str:
    return reverse(f"admin:regression_tracking_{obj._meta.model_name}_change", args=[obj.pk])


def listed_ids(response: Any) -> set[int]:
    assert response.status_code == 200
    return {row.id for row in response.context["cl"].result_list}


def messages_of(response: Any) -> list[tuple[str, str]]:
    return [(message.level_tag, str(message)) for message in get_messages(response.wsgi_request)]


def run_action(client: Any, action: str, ids: list[int], query: str = "", **data: Any) -> Any:
    return client.post(
        CHANGELIST + query,
        {"action": action, ACTION_CHECKBOX_NAME: ids, "index": 0, **data},
        follow=True,
    )


def make_rows(count: int) -> None:
    """``count`` rows, a third each linked, orphaned without a GroupHash, and discarded."""
    project = ProjectFactory.create()
    for number in range(count):
        if number % 3 == 0:
            create_linked_regression(project=project)
        elif number % 3 == 1:
            RegressionGroupFactory.create(project=project)
        else:
            create_grouphash_without_group(RegressionGroupFactory.create(project=project))


class TestRegressionGroupChangelist:
    def test_shows_the_columns_issue_hash_and_links(self, admin_client, world) -> None:
        response = admin_client.get(CHANGELIST)
        assert listed_ids(response) == {row.id for row in world.all}
        html = response.content.decode()
        for header in ("Type", "Project", "Fingerprint", "Version", "Active", "Date regressed"):
            assert f">{header}</a>" in html
        assert "issue hash" in html.lower()
        for row in world.all:
            assert row.fingerprint in html
            assert issue_hash(row) == hashlib.md5(row.fingerprint.encode()).hexdigest()
            assert issue_hash(row) in html
        group = Group.objects.get(grouphash__hash=issue_hash(world.linked))
        assert f'<a href="{change_url(group)}">group {group.pk}</a>' in html
        discarded_hash = GroupHash.objects.get(hash=issue_hash(world.discarded))
        assert f'orphan: <a href="{change_url(discarded_hash)}">grouphash without group</a>' in html
        assert html.count("orphan: missing grouphash") == 3

    def test_rows_carry_the_issue_columns(self, admin_client, world) -> None:
        rows = {row.id: row for row in admin_client.get(CHANGELIST).context["cl"].result_list}
        linked = rows[world.linked.id]
        grouphash = GroupHash.objects.get(hash=issue_hash(world.linked))
        assert (linked.issue_hash, linked.issue_group_id, linked.issue_grouphash_id) == (
            issue_hash(world.linked),
            grouphash.group_id,
            grouphash.id,
        )
        discarded = rows[world.discarded.id]
        assert discarded.issue_group_id is None
        assert discarded.issue_grouphash_id is not None
        assert (
            rows[world.old_active.id].issue_group_id,
            rows[world.old_active.id].issue_grouphash_id,
        ) == (
            None,
            None,
        )

    @pytest.mark.parametrize("query", ["", "?issue=linked", "?issue=orphan", "?q=0", "?o=2"])
    @pytest.mark.parametrize("rows", [1, 50])
    def test_query_count_does_not_grow_with_rows(
        self, admin_client, django_assert_num_queries, rows: int, query: str
    ) -> None:
        make_rows(rows)
        with django_assert_num_queries(CHANGELIST_QUERIES):
            response = admin_client.get(CHANGELIST + query)
        assert response.status_code == 200
        if not query:
            assert len(response.context["cl"].result_list) == rows

    def test_a_full_page_of_many_rows_still_takes_the_same_queries(
        self, admin_client, django_assert_num_queries
    ) -> None:
        make_rows(admin_module.LIST_PER_PAGE + 5)
        with django_assert_num_queries(CHANGELIST_QUERIES):
            response = admin_client.get(CHANGELIST + "?p=2")
        assert len(response.context["cl"].result_list) == 5


class TestIssueFilter:
    @pytest.mark.parametrize(
        ("state", "expected"),
        [
            ("linked", {"linked"}),
            ("orphan", {"old_active", "old_inactive", "discarded", "recent"}),
            ("missing_grouphash", {"old_active", "old_inactive", "recent"}),
            ("grouphash_without_group", {"discarded"}),
        ],
    )
    def test_filters_by_issue_state(self, admin_client, world, state, expected) -> None:
        response = admin_client.get(CHANGELIST, {"issue": state})
        assert listed_ids(response) == {getattr(world, name).id for name in expected}

    def test_choices_are_listed(self, admin_client, world) -> None:
        html = admin_client.get(CHANGELIST).content.decode()
        assert "By issue" in html
        for label in (
            "Linked",
            "Orphan (any reason)",
            "Orphan (missing grouphash)",
            "Orphan (grouphash without group)",
        ):
            assert label in html

    def test_filter_runs_inside_the_one_list_query(
        self, admin_client, world, django_assert_num_queries
    ) -> None:
        with django_assert_num_queries(CHANGELIST_QUERIES) as captured:
            admin_client.get(CHANGELIST, {"issue": "grouphash_without_group"})
        list_query = captured.captured_queries[-1]["sql"]
        assert list_query.count("EXISTS") == 2
        assert "NOT EXISTS" in list_query

    def test_agrees_with_the_cleanup_orphan_selection(self, world) -> None:
        # A second GroupHash of the key's project under another hash must not link anything.
        GroupHashFactory.create(project=world.old_active.project, hash="0" * 32)
        other_project = ProjectFactory.create()
        create_issue_for(RegressionGroupFactory.create(project=other_project))
        # The same fingerprint in another project has an issue there, not here.
        create_linked_regression(project=other_project, fingerprint=world.old_active.fingerprint)
        orphans = select_orphans(cutoff=timezone.now() + timedelta(days=1))
        queryset = RegressionGroup.objects.all()
        for state, reason in (
            (IssueState.MISSING_GROUPHASH, "missing_grouphash"),
            (IssueState.GROUPHASH_WITHOUT_GROUP, "grouphash_without_group"),
        ):
            filtered = set(filter_by_issue_state(queryset, state).values_list("id", flat=True))
            assert filtered == {orphan.id for orphan in orphans if orphan.reason == reason}
        all_orphans = filter_by_issue_state(queryset, IssueState.ORPHAN)
        linked = filter_by_issue_state(queryset, IssueState.LINKED)
        assert set(all_orphans.values_list("id", flat=True)) == {orphan.id for orphan in orphans}
        assert set(linked.values_list("id", flat=True)).isdisjoint(all_orphans.values_list("id"))
        assert linked.count() + all_orphans.count() == queryset.count()

    def test_counts_on_demand(self, admin_client, world) -> None:
        html = admin_client.get(CHANGELIST, {"_facets": "True"}).content.decode()
        for label in (
            "Linked (1)",
            "Orphan (any reason) (4)",
            "Orphan (missing grouphash) (3)",
            "Orphan (grouphash without group) (1)",
        ):
            assert label in html

    def test_unknown_state_redirects_with_the_error_flag(self, admin_client, world) -> None:
        response = admin_client.get(CHANGELIST, {"issue": "bogus"})
        assert response.status_code == 302
        assert response["Location"].endswith("?e=1")

    def test_combines_with_the_other_filters(self, admin_client, world) -> None:
        response = admin_client.get(CHANGELIST, {"issue": "missing_grouphash", "active__exact": 1})
        assert listed_ids(response) == {world.old_active.id, world.recent.id}
        function = create_old_orphan(
            project=world.linked.project, type=RegressionType.FUNCTION, fingerprint="1f"
        )
        response = admin_client.get(CHANGELIST, {"issue": "orphan", "type__exact": 1})
        assert listed_ids(response) == {function.id}


@pytest.mark.postgresql
class TestIssueFilterPlan:
    @pytest.mark.parametrize("state", [IssueState.ORPHAN, IssueState.MISSING_GROUPHASH])
    def test_orphan_filters_plan_as_anti_joins(self, world, state: IssueState) -> None:
        plan = filter_by_issue_state(RegressionGroup.objects.all(), state).explain()
        assert "Anti Join" in plan
        assert "SubPlan" not in plan


class TestSearch:
    def test_by_fingerprint(self, admin_client, world) -> None:
        response = admin_client.get(CHANGELIST, {"q": world.discarded.fingerprint})
        assert listed_ids(response) == {world.discarded.id}

    def test_by_the_short_fingerprint(self, admin_client, world) -> None:
        response = admin_client.get(CHANGELIST, {"q": world.recent.fingerprint[:16]})
        assert listed_ids(response) == {world.recent.id}

    def test_by_issue_hash_in_any_case(self, admin_client, world) -> None:
        for term in (issue_hash(world.old_active), issue_hash(world.old_active).upper()):
            response = admin_client.get(CHANGELIST, {"q": term})
            assert listed_ids(response) == {world.old_active.id}

    def test_nothing_matches_an_unknown_term(self, admin_client, world) -> None:
        assert listed_ids(admin_client.get(CHANGELIST, {"q": "f" * 32})) == set()

    def test_grouphash_by_hash(self, admin_client, world) -> None:
        grouphash = GroupHash.objects.get(hash=issue_hash(world.discarded))
        response = admin_client.get(
            "/admin/regression_tracking/grouphash/", {"q": grouphash.hash.upper()}
        )
        assert listed_ids(response) == {grouphash.id}


class TestDeactivateAction:
    def test_deactivates_old_active_orphans_and_says_what_was_left_alone(
        self, admin_client, world
    ) -> None:
        before = {row.id: row for row in RegressionGroup.objects.all()}
        response = run_action(
            admin_client, "deactivate_selected_orphans", [row.id for row in world.all]
        )
        assert messages_of(response) == [
            (
                "success",
                "Deactivated 2 of 5 selected regression groups; left alone 3: 1 not orphaned"
                " (a live issue), 1 too recent (added less than 24h ago), 1 already inactive.",
            )
        ]
        after = {row.id: row for row in RegressionGroup.objects.all()}
        for row in (world.old_active, world.discarded):
            assert after[row.id].active is False
            assert after[row.id].date_resolved is not None
        for row in (world.linked, world.old_inactive, world.recent):
            assert after[row.id].active == before[row.id].active
            assert after[row.id].date_resolved == before[row.id].date_resolved
        assert set(after) == set(before)

    def test_selection_of_linked_rows_only_changes_nothing(self, admin_client, world) -> None:
        response = run_action(admin_client, "deactivate_selected_orphans", [world.linked.id])
        assert messages_of(response) == [
            (
                "warning",
                "Deactivated 0 of 1 selected regression group; left alone 1: 1 not orphaned"
                " (a live issue).",
            )
        ]
        assert RegressionGroup.objects.get(id=world.linked.id).active is True

    def test_select_across_a_filtered_list(self, admin_client, world) -> None:
        response = run_action(
            admin_client,
            "deactivate_selected_orphans",
            [world.discarded.id],
            query="?issue=orphan",
            select_across=1,
        )
        assert messages_of(response) == [
            (
                "success",
                "Deactivated 2 of 4 selected regression groups; left alone 2: 1 too recent"
                " (added less than 24h ago), 1 already inactive.",
            )
        ]
        assert set(RegressionGroup.objects.filter(active=False).values_list("id", flat=True)) == {
            world.old_active.id,
            world.old_inactive.id,
            world.discarded.id,
        }

    def test_an_issue_that_appears_after_detection_saves_its_row(
        self, admin_client, world, monkeypatch
    ) -> None:
        """The race rule through the admin: the write re-checks the orphan predicate."""

        def detect_then_issue_appears(**kwargs: Any) -> Any:
            orphans = detect_orphans(**kwargs)
            grouphash = GroupHash.objects.get(hash=issue_hash(world.discarded))
            grouphash.group = GroupFactory.create(project=world.discarded.project)
            grouphash.save()
            return orphans

        monkeypatch.setattr(cleanup_module, "detect_orphans", detect_then_issue_appears)
        response = run_action(
            admin_client, "deactivate_selected_orphans", [world.old_active.id, world.discarded.id]
        )
        assert messages_of(response) == [
            (
                "success",
                "Deactivated 1 of 2 selected regression groups; left alone 1: 1 changed meanwhile"
                " (an issue appeared, or another cleanup got there first).",
            )
        ]
        assert RegressionGroup.objects.get(id=world.discarded.id).active is True
        assert RegressionGroup.objects.get(id=world.old_active.id).active is False

    def test_grace_period_is_the_admin_setting(self, admin_client, world, monkeypatch):
        monkeypatch.setattr(admin_module.RegressionGroupAdmin, "orphan_min_age", timedelta(0))
        response = run_action(admin_client, "deactivate_selected_orphans", [world.recent.id])
        assert messages_of(response) == [
            ("success", "Deactivated 1 of 1 selected regression group.")
        ]

    def test_too_large_a_selection_is_refused(self, admin_client, world, monkeypatch):
        monkeypatch.setattr(admin_module, "MAX_ACTION_SELECTION", 2)
        response = run_action(
            admin_client, "deactivate_selected_orphans", [row.id for row in world.all]
        )
        assert messages_of(response) == [
            (
                "error",
                "Select at most 2 regression groups at a time; nothing was changed. For more,"
                " run manage.py cleanup_orphaned_regressions.",
            )
        ]
        assert not RegressionGroup.objects.filter(date_resolved__isnull=False).exists()


class TestDeleteAction:
    def test_deletes_old_orphans_and_says_what_was_left_alone(self, admin_client, world) -> None:
        response = run_action(
            admin_client, "delete_selected_orphans", [row.id for row in world.all]
        )
        assert messages_of(response) == [
            (
                "success",
                "Deleted 3 of 5 selected regression groups; left alone 2: 1 not orphaned"
                " (a live issue), 1 too recent (added less than 24h ago).",
            )
        ]
        assert set(RegressionGroup.objects.values_list("id", flat=True)) == {
            world.linked.id,
            world.recent.id,
        }

    def test_rows_deleted_before_the_action_are_reported_gone(self, admin_client, world) -> None:
        gone_id = world.old_active.id
        world.old_active.delete()
        response = run_action(admin_client, "delete_selected_orphans", [gone_id, world.linked.id])
        # The ticked ids, not only the rows that still exist: the deleted one is gone.
        assert messages_of(response) == [
            (
                "warning",
                "Deleted 0 of 2 selected regression groups; left alone 2: 1 not orphaned"
                " (a live issue), 1 no longer there.",
            )
        ]

    def test_django_bulk_delete_and_per_row_delete_are_not_offered(
        self, admin_client, world
    ) -> None:
        response = admin_client.get(CHANGELIST)
        actions = [value for value, _ in response.context["action_form"].fields["action"].choices]
        assert actions == ["", "deactivate_selected_orphans", "delete_selected_orphans"]
        delete_url = reverse(
            "admin:regression_tracking_regressiongroup_delete", args=[world.old_active.id]
        )
        assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
        assert RegressionGroup.objects.filter(id=world.old_active.id).exists()


@pytest.mark.postgresql
class TestActionWhileACleanupRuns:
    def test_says_so_and_changes_nothing(self, admin_client, world) -> None:
        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        with psycopg.connect(**params, autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s, 0)", [CLEANUP_LOCK_CLASS])
            response = run_action(
                admin_client, "delete_selected_orphans", [row.id for row in world.all]
            )
        assert messages_of(response) == [
            (
                "error",
                "Another orphan cleanup is running; nothing was changed. Try again when it ends.",
            )
        ]
        assert RegressionGroup.objects.count() == 5


class TestRegressionGroupPage:
    def test_shows_issue_hash_and_group_link_read_only(self, admin_client, world) -> None:
        response = admin_client.get(change_url(world.linked))
        assert response.status_code == 200
        html = response.content.decode()
        group = Group.objects.get(grouphash__hash=issue_hash(world.linked))
        assert issue_hash(world.linked) in html
        assert f'<a href="{change_url(group)}">group {group.pk}</a>' in html
        assert 'name="fingerprint"' not in html
        assert "deletelink" not in html

    def test_cannot_be_added_by_hand(self, admin_client) -> None:
        add_url = reverse("admin:regression_tracking_regressiongroup_add")
        assert admin_client.get(add_url).status_code == 403


class TestGroupAndGroupHashPages:
    def test_group_page_links_to_its_grouphash_and_regressions(self, admin_client, world) -> None:
        grouphash = GroupHash.objects.get(hash=issue_hash(world.linked))
        html = admin_client.get(change_url(grouphash.group)).content.decode()
        assert f'<a href="{change_url(grouphash)}">{grouphash.hash}</a>' in html
        assert f'href="{CHANGELIST}?q={grouphash.hash}"' in html

    def test_grouphash_page_links_to_its_group_and_regressions(self, admin_client, world) -> None:
        grouphash = GroupHash.objects.get(hash=issue_hash(world.linked))
        html = admin_client.get(change_url(grouphash)).content.decode()
        assert f'<a href="{change_url(grouphash.group)}">group {grouphash.group_id}</a>' in html
        regressions_link = f"{CHANGELIST}?q={grouphash.hash}"
        assert f'href="{regressions_link}"' in html
        assert listed_ids(admin_client.get(regressions_link)) == {world.linked.id}

    def test_grouphash_without_group_page_has_no_group_link(self, admin_client, world) -> None:
        grouphash = GroupHash.objects.get(hash=issue_hash(world.discarded))
        response = admin_client.get(change_url(grouphash))
        assert response.status_code == 200
        assert re.search(r"/group/\d+/change/", response.content.decode()) is None

    def test_changelists_link_both_ways(self, admin_client, world) -> None:
        grouphash = GroupHash.objects.get(hash=issue_hash(world.linked))
        group_list = admin_client.get("/admin/regression_tracking/group/").content.decode()
        assert f'<a href="{change_url(grouphash)}">{grouphash.hash}</a>' in group_list
        hash_list = admin_client.get("/admin/regression_tracking/grouphash/").content.decode()
        assert (
            f'<a href="{change_url(grouphash.group)}">group {grouphash.group_id}</a>' in hash_list
        )

    def test_grouphash_filter_by_missing_group(self, admin_client, world) -> None:
        response = admin_client.get("/admin/regression_tracking/grouphash/", {"group__isempty": 1})
        assert listed_ids(response) == {GroupHash.objects.get(group=None).id}

    @pytest.mark.parametrize("rows", [1, 50])
    def test_group_and_grouphash_lists_take_bounded_queries(
        self, admin_client, django_assert_num_queries, rows: int
    ) -> None:
        make_rows(rows)
        # Session, user, COUNT(*), the list, and for groups one prefetch of their hashes.
        with django_assert_num_queries(5):
            assert admin_client.get("/admin/regression_tracking/group/").status_code == 200
        with django_assert_num_queries(4):
            assert admin_client.get("/admin/regression_tracking/grouphash/").status_code == 200


class TestOrganizationAndProjectPages:
    def test_lists_and_search(self, admin_client) -> None:
        project = ProjectFactory.create(organization=OrganizationFactory.create(slug="acme"))
        response = admin_client.get("/admin/regression_tracking/organization/", {"q": "acme"})
        assert listed_ids(response) == {project.organization_id}
        response = admin_client.get("/admin/regression_tracking/project/", {"q": project.slug})
        assert listed_ids(response) == {project.id}
        assert admin_client.get(change_url(project)).status_code == 200

    def test_every_model_is_registered(self, admin_client) -> None:
        html = admin_client.get("/admin/").content.decode()
        for model in ("organization", "project", "group", "grouphash", "regressiongroup"):
            assert f"/admin/regression_tracking/{model}/" in html
        assert Group._meta.db_table == "sentry_groupedmessage"
