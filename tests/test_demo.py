from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from regression_tracking.management.demo_data import DemoRefused, load_demo_data
from regression_tracking.models import Organization, RegressionGroup
from regression_tracking.services import OrphanReason
from tests.factories import OrganizationFactory, RegressionGroupFactory
from tests.reliability import database_checksum
from tests.utils import select_orphans

pytestmark = pytest.mark.django_db


def test_demo_holds_every_kind_of_regression() -> None:
    summary = load_demo_data()
    assert (summary.projects, summary.regression_groups, summary.grouphashes) == (2, 10, 4)
    orphans = select_orphans(cutoff=timezone.now() - timedelta(hours=24))
    assert sorted((o.reason, o.active, o.old_enough) for o in orphans) == sorted(
        [
            (OrphanReason.MISSING_GROUPHASH, False, True),  # old inactive version
            (OrphanReason.MISSING_GROUPHASH, True, True),  # never created
            (OrphanReason.MISSING_GROUPHASH, True, True),  # deleted issue
            (OrphanReason.MISSING_GROUPHASH, True, True),  # same endpoint, other project
            (OrphanReason.MISSING_GROUPHASH, True, False),  # too recent
            (OrphanReason.GROUPHASH_WITHOUT_GROUP, True, True),  # discarded
        ]
    )


def test_loading_twice_refuses_the_second_time_and_replace_loads_it_afresh() -> None:
    load_demo_data()
    first = set(RegressionGroup.objects.values_list("id", flat=True))
    with pytest.raises(DemoRefused, match="loaded already; --replace loads it afresh"):
        load_demo_data()
    assert set(RegressionGroup.objects.values_list("id", flat=True)) == first
    load_demo_data(replace=True)
    assert Organization.objects.count() == 1
    assert RegressionGroup.objects.count() == 10
    assert not first & set(RegressionGroup.objects.values_list("id", flat=True))


def test_replace_on_an_empty_database_loads_the_demo() -> None:
    assert load_demo_data(replace=True).regression_groups == 10


def _load(*args: str) -> str:
    out = StringIO()
    call_command("load_demo_data", *args, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize("replace", [[], ["--replace"]])
def test_an_organization_it_did_not_load_is_never_touched(replace) -> None:
    """Someone's organization with slug "demo" was deleted with all its data."""
    theirs = OrganizationFactory.create(slug="demo", name="Demo")
    regression = RegressionGroupFactory.create(project__organization=theirs)
    before = database_checksum()
    with pytest.raises(
        CommandError,
        match=r"^the database holds organizations the demo did not load: demo; load the demo "
        r"into a database of its own; nothing was changed$",
    ):
        _load(*replace)
    assert database_checksum() == before
    assert RegressionGroup.objects.filter(id=regression.id).exists()


def test_other_organizations_beside_its_own_refuse_even_replace() -> None:
    load_demo_data()
    OrganizationFactory.create(slug="acme")
    before = database_checksum()
    with pytest.raises(CommandError, match="organizations the demo did not load: acme"):
        _load("--replace")
    assert database_checksum() == before


def test_a_database_with_tables_django_did_not_create_is_refused() -> None:
    """A Sentry database has hundreds of tables; the demo is not for it."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE sentry_useremail (id integer PRIMARY KEY)")
    with pytest.raises(
        CommandError,
        match=r"tables this project did not create \(a Sentry database\?\): "
        r"sentry_useremail;",
    ):
        _load("--replace")
    assert not Organization.objects.exists()


@pytest.mark.parametrize("runs", [1, 2])
def test_the_demo_job_as_make_demo_runs_it(runs) -> None:
    """``make demo`` runs ``load_demo_data --replace`` on every run, into the same database."""
    for _run in range(runs):
        out = StringIO()
        call_command("load_demo_data", "--replace", stdout=out)
        call_command("cleanup_orphaned_regressions", "--dry-run", stdout=out)
        call_command("cleanup_orphaned_regressions", stdout=out)
        text = re.sub(r"elapsed: \S+", "elapsed: <s>", out.getvalue())
        assert "Loaded the 'demo' organization: 2 projects, 10 regression groups" in text
        assert "would be deleted: 5 (dry run: nothing was changed)\n" in text
        assert "\ndeleted: 5\n" in text
        assert RegressionGroup.objects.count() == 5
