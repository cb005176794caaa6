"""The original bug report's six scenarios, each asserting what the report observed.

The report itself is not in the repository; the six scenarios are the ones the lookup issue
(#3) lists from it: an orphan whose issue was never created, the normal flow with both records,
deleting the issue, a bulk query over mixed states, a GroupHash whose issue is gone (group NULL),
and (its last step) cleaning the orphan up so the next regression gets an issue again.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from regression_tracking.fingerprints import generate_fingerprint
from regression_tracking.models import GroupHash, RegressionGroup, RegressionType
from regression_tracking.ops.log import record_extra
from regression_tracking.orphans import is_orphan, orphan_reason
from regression_tracking.services import (
    MISSING_ISSUE_GROUP_MESSAGE,
    DetectedRegression,
    RegressionAction,
    RegressionOutcome,
    SkipReason,
    bulk_get_groups_from_fingerprints,
    get_issue_groups_for_regressions,
    save_regressions_with_versions,
)
from tests.factories import (
    ProjectFactory,
    RegressionGroupFactory,
    create_grouphash_without_group,
    create_issue_for,
    issue_hash,
)

pytestmark = pytest.mark.django_db


def detected_orphans() -> dict[int, str]:
    """Every orphan and its reason, as the cleanup's detection sees them."""
    rows = RegressionGroup.objects.filter(is_orphan()).annotate(reason=orphan_reason())
    return dict(rows.values_list("id", "reason"))


def missing_issue_warnings(caplog) -> list[dict[str, object]]:
    return [
        record_extra(r)
        for r in caplog.records
        if r.levelno == logging.WARNING and r.getMessage() == MISSING_ISSUE_GROUP_MESSAGE
    ]


def test_orphan_is_detected_and_logged_when_its_issue_was_never_created(caplog) -> None:
    regression = RegressionGroupFactory.create()
    caplog.set_level(logging.INFO, logger="regression_tracking")
    assert get_issue_groups_for_regressions([regression]) == {regression.id: None}
    assert missing_issue_warnings(caplog) == [
        {
            "project_id": regression.project_id,
            "fingerprint": [issue_hash(regression)],
            "reason": "missing_grouphash",
            "regression_group_ids": [regression.id],
        }
    ]
    assert detected_orphans() == {regression.id: "missing_grouphash"}


def test_normal_flow_with_both_records_finds_the_exact_group(caplog) -> None:
    regression = RegressionGroupFactory.create()
    grouphash = create_issue_for(regression)
    # Another issue in the same project must not be returned instead.
    create_issue_for(RegressionGroupFactory.create(project=regression.project))
    caplog.set_level(logging.INFO, logger="regression_tracking")
    group = get_issue_groups_for_regressions([regression])[regression.id]
    assert group is not None
    assert group.id == grouphash.group_id
    assert caplog.records == []
    assert regression.id not in detected_orphans()


def test_deleting_the_issue_leaves_a_detectable_orphan(caplog) -> None:
    regression = RegressionGroupFactory.create()
    grouphash = create_issue_for(regression)
    assert grouphash.group is not None
    grouphash.group.delete()
    # Group deletion takes its GroupHash rows with it; the RegressionGroup stays.
    assert not GroupHash.objects.filter(id=grouphash.id).exists()
    assert RegressionGroup.objects.filter(id=regression.id).exists()
    caplog.set_level(logging.INFO, logger="regression_tracking")
    pair = (regression.project_id, [issue_hash(regression)])
    assert bulk_get_groups_from_fingerprints([pair]) == {}
    [warning] = missing_issue_warnings(caplog)
    assert (warning["regression_group_ids"], warning["reason"]) == (
        [regression.id],
        "missing_grouphash",
    )
    assert detected_orphans() == {regression.id: "missing_grouphash"}


def test_bulk_query_over_mixed_states(caplog) -> None:
    project = ProjectFactory.create()
    linked = RegressionGroupFactory.create(project=project)
    grouphash = create_issue_for(linked)
    never = RegressionGroupFactory.create(project=project)
    discarded = RegressionGroupFactory.create(project=project, type=RegressionType.FUNCTION)
    create_grouphash_without_group(discarded)
    inactive = RegressionGroupFactory.create(project=project, active=False)
    caplog.set_level(logging.INFO, logger="regression_tracking")
    groups = get_issue_groups_for_regressions([linked, never, discarded, inactive])
    assert {rg_id: g.id if g else None for rg_id, g in groups.items()} == {
        linked.id: grouphash.group_id,
        never.id: None,
        discarded.id: None,
        inactive.id: None,
    }
    warned: dict[tuple[object, ...], object] = {
        tuple(w["regression_group_ids"]): w["reason"] for w in missing_issue_warnings(caplog)
    }
    assert warned == {
        (never.id,): "missing_grouphash",
        (discarded.id,): "grouphash_without_group",
        (inactive.id,): "missing_grouphash",
    }
    assert detected_orphans() == {
        never.id: "missing_grouphash",
        discarded.id: "grouphash_without_group",
        inactive.id: "missing_grouphash",
    }


def test_grouphash_exists_while_its_issue_is_gone(caplog) -> None:
    regression = RegressionGroupFactory.create()
    grouphash = create_grouphash_without_group(regression)
    assert (grouphash.group_id, grouphash.group_tombstone_id) == (None, 1)
    caplog.set_level(logging.INFO, logger="regression_tracking")
    assert get_issue_groups_for_regressions([regression]) == {regression.id: None}
    [warning] = missing_issue_warnings(caplog)
    assert warning["reason"] == "grouphash_without_group"
    assert detected_orphans() == {regression.id: "grouphash_without_group"}


def test_cleaning_up_the_orphan_unblocks_the_next_regression() -> None:
    project = ProjectFactory.create()
    name = "/api/endpoint/unblocked/"
    now = timezone.now()
    # A young orphan: the occurrence for its version 1 was dropped an hour ago.
    orphan = RegressionGroupFactory.create(
        project=project,
        fingerprint=generate_fingerprint(RegressionType.ENDPOINT, name),
        date_added=now - timedelta(hours=1),
        date_regressed=now - timedelta(days=2),
    )

    def detect() -> RegressionOutcome:
        regression = DetectedRegression(
            project_id=project.id, name=name, breakpoint=now, baseline=100, regressed=300
        )
        [outcome] = save_regressions_with_versions(
            regression_type=RegressionType.ENDPOINT, regressions=[regression], now=now
        )
        return outcome

    # While it is active, the detector saves no new version of that endpoint.
    assert detect().skip_reason == SkipReason.ORPHAN_TOO_RECENT
    call_command(
        "cleanup_orphaned_regressions",
        "--action",
        "deactivate",
        "--min-age",
        "0",
        stdout=StringIO(),
        stderr=StringIO(),
    )
    orphan.refresh_from_db()
    assert not orphan.active
    outcome = detect()
    assert (outcome.action, outcome.version) == (RegressionAction.CREATED, 2)
