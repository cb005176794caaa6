"""The admin's orphan overview: its figures (admin.overview), the page and its SVG charts."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from regression_tracking.admin.overview import AGE_BUCKETS, Figure, orphan_overview
from regression_tracking.admin.overview_view import bar_chart
from regression_tracking.models import RegressionGroup, RegressionType
from regression_tracking.services import cleanup_orphaned_regressions
from tests.factories import (
    ProjectFactory,
    RegressionGroupFactory,
    create_grouphash_without_group,
    create_linked_regression,
)

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
OVERVIEW = "/admin/regression_tracking/regressiongroup/overview/"
CHANGELIST = "/admin/regression_tracking/regressiongroup/"
# The page adds the session, the user, and the user's and their groups' permissions.
PAGE_STATEMENTS = 4
# The census's join of RegressionGroups on GroupHash, from its LEFT JOIN to its WHERE.
CENSUS_JOIN = re.compile(r" regression LEFT JOIN \(SELECT .*? IS NOT TRUE")


def overview_queries() -> int:
    """Detection's census (savepoint, the id range's bounds, the one statement, release; on
    PostgreSQL two set_config too), then the top projects' slugs."""
    return (6 if connection.vendor == "postgresql" else 4) + 1


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def frozen(time_machine) -> None:
    time_machine.move_to(NOW, tick=False)


def ago(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


@pytest.fixture
def world(frozen) -> dict[str, Any]:
    """Three projects; orphans of both reasons, both types and every age bucket; linked rows."""
    checkout = ProjectFactory.create(slug="checkout")
    search = ProjectFactory.create(slug="search")
    quiet = ProjectFactory.create(slug="quiet")
    rows = {
        "linked": create_linked_regression(project=checkout, date_added=ago(days=100)),
        "linked_quiet": create_linked_regression(project=quiet, date_added=ago(days=3)),
        "recent": RegressionGroupFactory.create(project=checkout, date_added=ago(hours=1)),
        # Exactly at the grace period's edge: not yet eligible (date_added < cutoff is), so it
        # counts as under 24h.
        "edge": RegressionGroupFactory.create(project=checkout, date_added=ago(hours=24)),
        "two_days": RegressionGroupFactory.create(
            project=checkout, date_added=ago(days=2), type=RegressionType.FUNCTION
        ),
        "ten_days": RegressionGroupFactory.create(
            project=search, date_added=ago(days=10), active=False
        ),
        "two_months": RegressionGroupFactory.create(project=search, date_added=ago(days=60)),
        "old": RegressionGroupFactory.create(
            project=checkout, date_added=ago(days=365), type=RegressionType.FUNCTION
        ),
    }
    create_grouphash_without_group(rows["two_months"])
    create_grouphash_without_group(rows["old"])
    return {"checkout": checkout, "search": search, "quiet": quiet, **rows}


@pytest.fixture
def viewer(client: Client) -> Client:
    """A client logged in as staff who may only view RegressionGroups."""
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename="view_regressiongroup"))
    client.force_login(user)
    return client


def counts(figures: tuple[Figure, ...]) -> dict[str, int]:
    return {figure.label: figure.count for figure in figures}


class TestOrphanOverview:
    def test_figures(self, world) -> None:
        overview = orphan_overview()
        assert overview.as_of == NOW
        assert (overview.regression_groups, overview.orphans) == (8, 6)
        assert (overview.active_orphans, overview.past_grace_period) == (5, 4)
        assert counts(overview.by_reason) == {"missing_grouphash": 4, "grouphash_without_group": 2}
        assert counts(overview.by_type) == {"endpoint": 4, "function": 2}
        assert counts(overview.by_age) == {
            "under 24h (grace period)": 2,
            "24h to 7 days": 1,
            "7 to 30 days": 1,
            "30 to 90 days": 1,
            "90 days or more": 1,
        }
        assert [(f.label, f.count, f.key) for f in overview.top_projects] == [
            ("checkout", 4, str(world["checkout"].id)),
            ("search", 2, str(world["search"].id)),
        ]

    def test_the_figures_are_the_dry_runs(self, world) -> None:
        # Both reasons, both types, every age, active and inactive orphans, linked rows.
        overview = orphan_overview()
        dry_run = cleanup_orphaned_regressions(dry_run=True)
        assert (overview.regression_groups, overview.orphans) == (dry_run.scanned, dry_run.orphaned)
        assert counts(overview.by_reason) == dry_run.by_reason
        assert overview.by_age[0].count == dry_run.too_recent
        assert overview.past_grace_period == dry_run.would_act == dry_run.eligible
        for breakdown in (overview.by_type, overview.by_age, overview.top_projects):
            assert sum(figure.count for figure in breakdown) == dry_run.orphaned

    def test_one_census_statement_the_dry_runs_join(self, world) -> None:
        with CaptureQueriesContext(connection) as dry_run:
            cleanup_orphaned_regressions(dry_run=True)
        with CaptureQueriesContext(connection) as captured:
            orphan_overview()

        def reading(table: str, queries: CaptureQueriesContext) -> list[str]:
            return [q["sql"] for q in queries.captured_queries if f'"{table}"' in q["sql"]]

        [census] = reading("sentry_grouphash", captured)
        [bounds] = [sql for sql in reading("sentry_regressiongroup", captured) if sql != census]
        # The id range's bounds, from the primary key's index.
        assert bounds.startswith('SELECT MIN("sentry_regressiongroup"."id")'), bounds
        [dry_run_census] = reading("sentry_grouphash", dry_run)
        join = CENSUS_JOIN.search(census)
        assert join is not None, census
        dry_run_join = CENSUS_JOIN.search(dry_run_census)
        assert dry_run_join is not None, dry_run_census
        assert join.group(0) == dry_run_join.group(0)

    def test_top_limits_the_projects_ties_by_id(self, frozen) -> None:
        projects = [ProjectFactory.create() for _ in range(4)]
        for project in projects:
            RegressionGroupFactory.create(project=project)
        RegressionGroupFactory.create(project=projects[2])
        top = orphan_overview(top=2).top_projects
        assert [f.key for f in top] == [str(projects[2].id), str(projects[0].id)]

    def test_a_project_without_its_row_is_named_by_id(self, world) -> None:
        search_id = world["search"].id
        with connection.constraint_checks_disabled():
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM sentry_grouphash WHERE project_id = %s", [search_id])
                cursor.execute("DELETE FROM sentry_project WHERE id = %s", [search_id])
            labels = [f.label for f in orphan_overview().top_projects]
            RegressionGroup.objects.filter(project_id=search_id).delete()
        assert labels == ["checkout", f"project {search_id}"]

    def test_empty_table(self, frozen) -> None:
        overview = orphan_overview()
        assert (overview.regression_groups, overview.orphans, overview.top_projects) == (0, 0, ())
        assert [f.count for f in overview.by_age] == [0] * len(AGE_BUCKETS)

    @pytest.mark.parametrize("orphans", [1, 30])
    def test_query_budget_whatever_the_size(self, frozen, orphans, django_assert_num_queries):
        for number in range(orphans):
            project = ProjectFactory.create()
            regression = RegressionGroupFactory.create(project=project, date_added=ago(days=number))
            if number % 2:
                create_grouphash_without_group(regression)
        with django_assert_num_queries(overview_queries()):
            overview = orphan_overview()
        assert overview.orphans == orphans

    def test_bad_top(self, django_assert_num_queries) -> None:
        with django_assert_num_queries(0), pytest.raises(ValueError, match="top must be"):
            orphan_overview(top=0)


def test_bar_chart_scales_to_the_largest_figure() -> None:
    figures = (Figure("a", 200, "a"), Figure("b", 1, "b"), Figure("c", 0, "c"))
    chart = bar_chart("x", "X", figures, ["/a", "/b", "/c"])
    assert [(bar.width, bar.count_text) for bar in chart.bars] == [(360, "200"), (2, "1"), (0, "0")]
    assert chart.description == "a: 200; b: 1; c: 0"
    assert chart.height == 3 * 28


def svg_of(html: str, slug: str) -> str:
    match = re.search(rf'<div class="module chart" id="chart-{slug}">.*?</svg>', html, re.S)
    assert match, slug
    return match.group(0)


class TestOverviewPage:
    def test_linked_from_the_changelist(self, viewer) -> None:
        html = viewer.get(CHANGELIST).content.decode()
        assert f'<a href="{OVERVIEW}" class="viewlink">Orphan overview</a>' in html

    def test_figures_and_charts(self, world, viewer) -> None:
        response = viewer.get(OVERVIEW)
        assert response.status_code == 200
        html = response.content.decode()
        assert "<title>Orphan overview | Django site admin</title>" in html
        summary = re.findall(r'<li id="figure-([a-z-]+)"><strong>([\d,]+)</strong>', html)
        assert summary == [
            ("regression-groups", "8"),
            ("orphans", "6"),
            ("active-orphans", "5"),
            ("past-grace-period", "4"),
        ]
        reason = svg_of(html, "reason")
        assert '<title id="chart-reason-title">Orphans by reason</title>' in reason
        assert (
            '<desc id="chart-reason-desc">missing_grouphash: 4; grouphash_without_group: 2</desc>'
            in reason
        )
        assert re.findall(r'<text class="value"[^>]*>([\d,]+)</text>', reason) == ["4", "2"]
        assert '<desc id="chart-projects-desc">checkout: 4; search: 2</desc>' in html
        assert '<desc id="chart-age-desc">under 24h (grace period): 2; 24h to 7 days: 1;' in html

    def test_no_script_and_nothing_from_elsewhere(self, world, viewer) -> None:
        html = viewer.get(OVERVIEW).content.decode()
        start = html.index('<div id="content-main" class="orphan-overview">')
        content = html[start : html.index("</p>\n</div>", start)]
        assert content.count("<svg ") == 4
        assert "<script" not in content
        assert set(re.findall(r"https?://[^\"' ]+", content)) == {"http://www.w3.org/2000/svg"}

    def test_each_bar_opens_the_regression_groups_it_counts(self, world, viewer) -> None:
        html = viewer.get(OVERVIEW).content.decode()
        links = {}
        for slug in ("reason", "type", "age", "projects"):
            for href, label in re.findall(
                r'<a href="([^"]+)" class="bar">\s*<title>([^:]+):', svg_of(html, slug)
            ):
                links[(slug, label)] = href.replace("&amp;", "&")

        def listed(key: tuple[str, str]) -> set[int]:
            response = viewer.get(links[key])
            assert response.status_code == 200, links[key]
            return {row.id for row in response.context["cl"].result_list}

        def ids(*names: str) -> set[int]:
            return {world[name].id for name in names}

        assert listed(("reason", "grouphash_without_group")) == ids("two_months", "old")
        assert listed(("type", "function")) == ids("two_days", "old")
        assert listed(("age", "under 24h (grace period)")) == ids("recent", "edge")
        assert listed(("age", "24h to 7 days")) == ids("two_days")
        assert listed(("age", "90 days or more")) == ids("old")
        assert listed(("projects", "search")) == ids("ten_days", "two_months")

    def test_empty_table(self, frozen, viewer) -> None:
        html = viewer.get(OVERVIEW).content.decode()
        assert '<desc id="chart-projects-desc">no orphans</desc>' in svg_of(html, "projects")

    @pytest.mark.parametrize("extra_orphans", [0, 25])
    def test_query_budget(self, world, viewer, extra_orphans, django_assert_num_queries) -> None:
        for _ in range(extra_orphans):
            RegressionGroupFactory.create(date_added=ago(days=3))
        with django_assert_num_queries(overview_queries() + PAGE_STATEMENTS):
            assert viewer.get(OVERVIEW).status_code == 200

    def test_needs_the_view_permission(self, world, client) -> None:
        client.force_login(User.objects.create_user("nobody", password="pw", is_staff=True))
        assert client.get(OVERVIEW).status_code == 403

    def test_anonymous_is_sent_to_log_in(self, client) -> None:
        response = client.get(OVERVIEW)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
