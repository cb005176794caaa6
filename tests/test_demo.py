from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from regression_tracking.models import Organization, RegressionGroup
from regression_tracking.services import OrphanReason, select_orphans
from regression_tracking.services.demo import load_demo_data

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


def test_loading_twice_replaces_the_demo() -> None:
    load_demo_data()
    load_demo_data()
    assert Organization.objects.count() == 1
    assert RegressionGroup.objects.count() == 10


def test_the_demo_job_as_make_demo_runs_it() -> None:
    out = StringIO()
    call_command("load_demo_data", stdout=out)
    call_command("cleanup_orphaned_regressions", "--dry-run", stdout=out)
    call_command("cleanup_orphaned_regressions", stdout=out)
    text = re.sub(r"elapsed: \S+", "elapsed: <s>", out.getvalue())
    assert "Loaded the 'demo' organization: 2 projects, 10 regression groups" in text
    assert "would be deleted: 5 (dry run: nothing was changed)\n" in text
    assert "\ndeleted: 5\n" in text
    assert RegressionGroup.objects.count() == 5
