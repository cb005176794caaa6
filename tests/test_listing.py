"""The dry run's orphan listing: the selector (cleanup.listing), its formats, and ``--list``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError, OutputWrapper
from django.db import connection

from regression_tracking.cleanup.listing import (
    DEFAULT_LIST_LIMIT,
    MAX_LIST_LIMIT,
    ListedOrphan,
    list_orphans,
)
from regression_tracking.durations import format_age
from regression_tracking.management.list_output import DryRunListing
from regression_tracking.models import RegressionGroup, RegressionType
from regression_tracking.services import OrphanReason, cleanup_orphaned_regressions
from tests.factories import (
    ProjectFactory,
    RegressionGroupFactory,
    create_grouphash_without_group,
    create_issue_for,
    create_linked_regression,
)
from tests.utils import run_cleanup as run

pytestmark = pytest.mark.django_db

COMMAND = "cleanup_orphaned_regressions"
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def frozen(time_machine) -> None:
    """Time stands still at NOW, so ages (and tqdm's clock) are exact."""
    time_machine.move_to(NOW, tick=False)


@pytest.fixture
def world(frozen) -> dict[str, RegressionGroup]:
    """Fixed ids, slugs and fingerprints, so the listing's output is exact."""
    checkout = ProjectFactory.create(id=7, slug="checkout")
    search = ProjectFactory.create(id=12, slug="search")
    linked = create_linked_regression(id=101, project=checkout, date_added=NOW - timedelta(days=9))
    old_active = RegressionGroupFactory.create(
        id=102, project=checkout, fingerprint="ab12cd34ef56ab78", date_added=NOW - timedelta(days=2)
    )
    old_inactive = RegressionGroupFactory.create(
        id=103,
        project=checkout,
        type=RegressionType.FUNCTION,
        fingerprint="1f",
        active=False,
        date_added=NOW - timedelta(days=3, hours=4, minutes=30),
    )
    discarded = RegressionGroupFactory.create(
        id=104, project=search, fingerprint="cd34", date_added=NOW - timedelta(days=40)
    )
    create_grouphash_without_group(discarded)
    recent = RegressionGroupFactory.create(
        id=105, project=search, fingerprint="ef56", date_added=NOW - timedelta(hours=1)
    )
    return {
        "linked": linked,
        "old_active": old_active,
        "old_inactive": old_inactive,
        "discarded": discarded,
        "recent": recent,
    }


def summary(would: str, count: int, last_id: int = 104, too_recent: int = 1) -> str:
    return (
        "scanned: 5\n"
        "orphaned: 4 (missing_grouphash 3, grouphash_without_group 1)\n"
        f"too recent: {too_recent} (younger than 24h)\n"
        f"eligible: {count}\n"
        f"would be {would}: {count} (dry run: nothing was changed)\n"
        "batches: 1\n"
        "batch sizes: 1000 to 1000, last 1000 (fixed)\n"
        f"last id: {last_id}\n"
        "stop reason: done\n"
        "elapsed: <s>\n"
    )


class TestListOrphans:
    def test_eligible_orphans_in_id_order_with_every_column(self, world) -> None:
        listing = list_orphans(cutoff=NOW - timedelta(hours=24))
        assert listing.total == 3
        assert listing.left_out == 0
        assert listing.as_of == NOW
        assert listing.orphans[0] == ListedOrphan(
            id=102,
            project_id=7,
            project_slug="checkout",
            type=RegressionType.ENDPOINT,
            fingerprint="ab12cd34ef56ab78",
            reason=OrphanReason.MISSING_GROUPHASH,
            date_added=NOW - timedelta(days=2),
            active=True,
            age=timedelta(days=2),
        )
        assert [(o.id, o.reason, o.active) for o in listing.orphans] == [
            (102, OrphanReason.MISSING_GROUPHASH, True),
            (103, OrphanReason.MISSING_GROUPHASH, False),
            (104, OrphanReason.GROUPHASH_WITHOUT_GROUP, True),
        ]

    def test_active_only_leaves_out_inactive_orphans(self, world) -> None:
        listing = list_orphans(cutoff=NOW - timedelta(hours=24), active_only=True)
        assert [o.id for o in listing.orphans] == [102, 104]

    def test_without_a_cutoff_every_orphan_of_any_age(self, world) -> None:
        listing = list_orphans(cutoff=None)
        assert [o.id for o in listing.orphans] == [102, 103, 104, 105]

    def test_within_a_queryset(self, world) -> None:
        listing = list_orphans(
            RegressionGroup.objects.filter(project_id=12), cutoff=NOW - timedelta(hours=24)
        )
        assert [o.id for o in listing.orphans] == [104]

    def test_limit_keeps_the_first_ids_and_counts_the_rest(self, world) -> None:
        listing = list_orphans(cutoff=None, limit=2)
        assert [o.id for o in listing.orphans] == [102, 103]
        assert (listing.total, listing.left_out) == (4, 2)

    def test_a_regression_group_of_a_deleted_project_is_listed(self, world) -> None:
        # Upstream keeps a bare project_id: emulate a deleted project by dropping the row alone.
        with connection.constraint_checks_disabled():
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM sentry_grouphash WHERE project_id = 12")
                cursor.execute("DELETE FROM sentry_project WHERE id = 12")
            listing = list_orphans(cutoff=None)
            # Leave no row pointing at the missing project for the deferred constraint check.
            RegressionGroup.objects.filter(project_id=12).delete()
        assert [(o.id, o.project_id, o.project_slug) for o in listing.orphans][2:] == [
            (104, 12, None),
            (105, 12, None),
        ]

    @pytest.mark.parametrize("limit", [0, MAX_LIST_LIMIT + 1])
    def test_limit_out_of_range(self, limit, django_assert_num_queries) -> None:
        with django_assert_num_queries(0), pytest.raises(ValueError, match="limit must be"):
            list_orphans(cutoff=None, limit=limit)

    @pytest.mark.parametrize("rows", [3, 40])
    def test_two_queries_when_the_limit_is_reached_whatever_the_count(
        self, frozen, rows, django_assert_num_queries
    ) -> None:
        project = ProjectFactory.create()
        for _ in range(rows):
            RegressionGroupFactory.create(project=project, date_added=NOW - timedelta(days=2))
        with django_assert_num_queries(2):
            listing = list_orphans(cutoff=NOW - timedelta(hours=24), limit=3)
        assert (len(listing.orphans), listing.total) == (3, rows)

    def test_one_query_when_everything_fits(self, world, django_assert_num_queries) -> None:
        with django_assert_num_queries(1):
            listing = list_orphans(cutoff=None, limit=10)
        assert listing.total == 4


@pytest.mark.parametrize(
    ("age", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=59), "59s"),
        (timedelta(seconds=60), "1m 0s"),
        (timedelta(minutes=12, seconds=5), "12m 5s"),
        (timedelta(hours=5), "5h 0m"),
        (timedelta(days=1, hours=23, minutes=59), "1d 23h"),
        (timedelta(days=400, hours=1), "400d 1h"),
        # A clock skew between the database and here never shows a negative age.
        (timedelta(seconds=-3), "0s"),
    ],
)
def test_format_age(age, text) -> None:
    assert format_age(age) == text


class TestListOption:
    def test_text_table_then_summary(self, world) -> None:
        assert run("--dry-run", "--list") == (
            " id  project  slug      type      fingerprint       reason                   age"
            "     active\n"
            "102        7  checkout  endpoint  ab12cd34ef56ab78  missing_grouphash        2d 0h"
            "   yes\n"
            "103        7  checkout  function  1f                missing_grouphash        3d 4h"
            "   no\n"
            "104       12  search    endpoint  cd34              grouphash_without_group  40d 0h"
            "  yes\n"
            "listed 3 of 3 orphans that would be deleted\n"
            "\n" + summary("deleted", 3)
        )

    def test_control_characters_are_escaped_as_in_json(self, world) -> None:
        world["old_active"].project.slug = "check\nout"
        world["old_active"].project.save()
        RegressionGroup.objects.filter(id=102).update(fingerprint="ab\tcd\x1b[31m\\x\x7f")
        lines = run("--dry-run", "--list").splitlines()
        # One line per orphan: a newline in a cell would have broken the table.
        assert [line.split()[0] for line in lines[1:5]] == ["102", "103", "104", "listed"]
        assert lines[1].split()[2:4] == ["check\\nout", "endpoint"]
        assert "ab\\tcd\\u001b[31m\\\\x\\u007f" in lines[1]
        assert all(char.isprintable() for line in lines for char in line)

    def test_deactivate_lists_only_active_orphans(self, world) -> None:
        output = run("--dry-run", "--list", "--action", "deactivate")
        assert output.splitlines()[1:4] == [
            "102        7  checkout  endpoint  ab12cd34ef56ab78  missing_grouphash        2d 0h"
            "   yes",
            "104       12  search    endpoint  cd34              grouphash_without_group  40d 0h"
            "  yes",
            "listed 2 of 2 orphans that would be deactivated",
        ]

    def test_limit_says_how_many_were_left_out(self, world) -> None:
        assert run("--dry-run", "--list", "--list-limit", "1").splitlines()[:3] == [
            " id  project  slug      type      fingerprint       reason             age    active",
            "102        7  checkout  endpoint  ab12cd34ef56ab78  missing_grouphash  2d 0h  yes",
            "listed 1 of 3 orphans that would be deleted; 2 left out (--list-limit 1)",
        ]

    def test_min_age_and_max_rows_list_exactly_what_the_dry_run_acts_on(self, world) -> None:
        output = run("--dry-run", "--list", "--min-age", "30d", "--max-rows", "5")
        assert output.splitlines()[1:3] == [
            "104       12  search  endpoint  cd34         grouphash_without_group  40d 0h  yes",
            "listed 1 of 1 orphans that would be deleted",
        ]
        output = run("--dry-run", "--list", "--max-rows", "2")
        assert [line.split()[0] for line in output.splitlines()[1:3]] == ["102", "103"]
        assert "listed 2 of 2 orphans that would be deleted\n" in output

    def test_nothing_to_list(self, world) -> None:
        assert run("--dry-run", "--list", "--min-age", "90d", "-v", "0") == (
            "listed 0 of 0 orphans that would be deleted\n"
        )

    def test_listed_at_verbosity_0_without_the_summary(self, world) -> None:
        output = run("--dry-run", "--list", "-v", "0")
        assert output.splitlines()[-1] == "listed 3 of 3 orphans that would be deleted"
        assert "scanned" not in output

    def test_json_lines_then_the_summary_object(self, world) -> None:
        lines = run("--dry-run", "--list", "--list-limit", "2", "--format", "json").splitlines()
        assert [json.loads(line) for line in lines[:2]] == [
            {
                "id": 102,
                "project_id": 7,
                "project_slug": "checkout",
                "type": "endpoint",
                "fingerprint": "ab12cd34ef56ab78",
                "reason": "missing_grouphash",
                "age_seconds": 2 * 86_400,
                "date_added": "2026-06-13T12:00:00+00:00",
                "active": True,
            },
            {
                "id": 103,
                "project_id": 7,
                "project_slug": "checkout",
                "type": "function",
                "fingerprint": "1f",
                "reason": "missing_grouphash",
                "age_seconds": 3 * 86_400 + 4 * 3_600 + 30 * 60,
                "date_added": "2026-06-12T07:30:00+00:00",
                "active": False,
            },
        ]
        result = json.loads(lines[2])
        assert len(lines) == 3
        assert (result["would_act"], result["listed"], result["left_out"]) == (3, 2, 1)

    def test_json_without_list_has_no_listing_keys(self, world) -> None:
        assert "listed" not in json.loads(run("--dry-run", "--format", "json"))

    def test_the_listing_is_what_the_real_run_then_deletes(self, world) -> None:
        listed = [
            json.loads(line)["id"]
            for line in run("--dry-run", "--list", "--format", "json").splitlines()[:-1]
        ]
        before = set(RegressionGroup.objects.values_list("id", flat=True))
        run()
        after = set(RegressionGroup.objects.values_list("id", flat=True))
        assert sorted(before - after) == listed == [102, 103, 104]

    def test_a_row_that_got_its_issue_after_its_batch_is_left_out(self, world) -> None:
        listing = DryRunListing(limit=10)
        result = cleanup_orphaned_regressions(dry_run=True, on_batch=listing.add)
        assert listing.ids == [102, 103, 104]
        create_issue_for(world["old_inactive"])
        out = StringIO()
        counts = listing.write(
            OutputWrapper(out),
            result,
            verb="would be deleted",
            output_format="text",
            verbosity=0,
            using="default",
        )
        assert counts == {"listed": 2, "left_out": 1}
        assert [line.split()[0] for line in out.getvalue().splitlines()] == [
            "id",
            "102",
            "104",
            "listed",
        ]
        assert out.getvalue().splitlines()[-1] == (
            "listed 2 of 3 orphans that would be deleted; 1 left out (--list-limit 10)"
        )

    def test_list_needs_dry_run_and_changes_nothing(self, world) -> None:
        with pytest.raises(CommandError, match="--list needs --dry-run"):
            run("--list")
        assert RegressionGroup.objects.count() == 5

    def test_list_limit_needs_list(self, world) -> None:
        with pytest.raises(CommandError, match="--list-limit needs --list"):
            run("--dry-run", "--list-limit", "5")

    def test_default_limit(self, frozen) -> None:
        project = ProjectFactory.create()
        for _ in range(DEFAULT_LIST_LIMIT + 1):
            RegressionGroupFactory.create(project=project, date_added=NOW - timedelta(days=2))
        lines = run("--dry-run", "--list").splitlines()
        assert len(lines) == 1 + DEFAULT_LIST_LIMIT + 1 + 1 + 10
        assert lines[DEFAULT_LIST_LIMIT + 1] == (
            "listed 100 of 101 orphans that would be deleted; 1 left out (--list-limit 100)"
        )

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ("0", "argument --list-limit: must be at least 1"),
            ("x", "argument --list-limit: invalid integer"),
            (str(MAX_LIST_LIMIT + 1), f"argument --list-limit: must be at most {MAX_LIST_LIMIT}"),
        ],
    )
    def test_bad_list_limit(self, world, value, message) -> None:
        with pytest.raises(CommandError, match=message):
            run("--dry-run", "--list", "--list-limit", value)

    def test_help_explains_the_options(self, capsys) -> None:
        with pytest.raises(SystemExit):
            call_command(COMMAND, "--help")
        text = " ".join(capsys.readouterr().out.split())
        assert "--list With --dry-run: also list each orphan the dry run would act on" in text
        assert "--list-limit N With --list: list at most N orphans" in text
