from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine

from regression_tracking import statistical_detectors as versioning
from regression_tracking.fingerprints import generate_fingerprint
from regression_tracking.issues.grouping import RegressionIssues
from regression_tracking.models import (
    GroupHash,
    GroupStatus,
    GroupSubStatus,
    RegressionGroup,
    RegressionType,
)
from regression_tracking.ops.log import record_extra
from regression_tracking.services import (
    ORPHAN_DEACTIVATED_MESSAGE,
    ORPHAN_TOO_RECENT_MESSAGE,
    DetectedRegression,
    OrphanReason,
    RegressionAction,
    RegressionOutcome,
    SkipReason,
    get_regression_groups,
    save_regressions_with_versions,
)
from regression_tracking.statistical_detectors import breakpoint as breakpoint_module
from tests.factories import (
    ProjectFactory,
    RegressionGroupFactory,
    create_grouphash_without_group,
    create_issue_for,
)

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ENDPOINT = RegressionType.ENDPOINT
FUNCTION = RegressionType.FUNCTION
VERSIONING_LOGGER = "regression_tracking.services.versioning"

CREATED = RegressionAction.CREATED
SKIPPED = RegressionAction.SKIPPED
MISSING = OrphanReason.MISSING_GROUPHASH
WITHOUT_GROUP = OrphanReason.GROUPHASH_WITHOUT_GROUP

# Upstream's test_save_regressions_with_versions runs for both detectors.
BOTH_DETECTORS = pytest.mark.parametrize(
    ("regression_type", "name"),
    [
        pytest.param(ENDPOINT, "transaction_1", id="endpoint"),
        pytest.param(FUNCTION, 123, id="function"),
    ],
)


def existing(
    project: Any,
    name: str | int = "/api/checkout/",
    *,
    regression_type: RegressionType = ENDPOINT,
    **fields: Any,
) -> RegressionGroup:
    """A saved version of ``name``'s regression, by default an old active version 1."""
    fields.setdefault("date_added", NOW - timedelta(days=7))
    fields.setdefault("date_regressed", NOW - timedelta(days=8))
    return RegressionGroupFactory.create(
        project=project,
        type=regression_type,
        fingerprint=generate_fingerprint(regression_type, name),
        **fields,
    )


def detected(
    project: Any,
    name: str | int = "/api/checkout/",
    *,
    breakpoint: datetime = NOW - timedelta(hours=6),
    baseline: float = 100.0,
    regressed: float = 400.0,
) -> DetectedRegression:
    return DetectedRegression(
        project_id=project.id,
        name=name,
        breakpoint=breakpoint,
        baseline=baseline,
        regressed=regressed,
    )


def save(
    *regressions: DetectedRegression, regression_type: RegressionType = ENDPOINT, **options: Any
) -> list[RegressionOutcome]:
    options.setdefault("now", NOW)
    return save_regressions_with_versions(
        regression_type=regression_type, regressions=regressions, **options
    )


def versions(project: Any, name: str | int = "/api/checkout/", regression_type=ENDPOINT):
    """(version, active) of every saved version of ``name``'s regression, oldest first."""
    return list(
        RegressionGroup.objects.filter(
            project=project,
            type=regression_type,
            fingerprint=generate_fingerprint(regression_type, name),
        )
        .order_by("version")
        .values_list("version", "active")
    )


def delete_issue_of(regression: RegressionGroup) -> None:
    """Create the regression's issue, then delete it (which deletes its GroupHash too)."""
    grouphash = create_issue_for(regression)
    assert grouphash.group is not None
    grouphash.group.delete()
    assert not GroupHash.objects.filter(id=grouphash.id).exists()


def versioning_records(caplog) -> list[tuple[int, str, dict[str, object]]]:
    return [
        (r.levelno, r.getMessage(), record_extra(r))
        for r in caplog.records
        if r.name == VERSIONING_LOGGER and r.getMessage() != versioning.VERSIONING_COMPLETED_MESSAGE
    ]


class TestGetRegressionGroups:
    def test_newest_version_of_each_pair(self) -> None:
        project = ProjectFactory.create()
        for version in (1, 2, 3):
            existing(project, "/a/", version=version, active=version == 3)
        for version in (1, 2):
            existing(project, "/b/", version=version, active=False)
        a, b = (generate_fingerprint(ENDPOINT, name) for name in ("/a/", "/b/"))
        result = get_regression_groups(ENDPOINT, [(project.id, a), (project.id, b)])
        assert sorted((rg.fingerprint, rg.version) for rg in result) == sorted([(a, 3), (b, 2)])

    def test_active_filters_before_the_newest_is_picked(self) -> None:
        project = ProjectFactory.create()
        existing(project, version=1, active=False)
        existing(project, version=2, active=True)
        pairs = [(project.id, generate_fingerprint(ENDPOINT, "/api/checkout/"))]
        assert [rg.version for rg in get_regression_groups(ENDPOINT, pairs, active=True)] == [2]
        assert [rg.version for rg in get_regression_groups(ENDPOINT, pairs, active=False)] == [1]
        assert [rg.version for rg in get_regression_groups(ENDPOINT, pairs)] == [2]

    def test_other_types_projects_and_fingerprints_are_not_returned(self) -> None:
        project, other_project = ProjectFactory.create_batch(2)
        wanted = existing(project, "7b", version=1)
        existing(project, 123, regression_type=FUNCTION, version=4)
        existing(other_project, "7b", version=5)
        existing(project, "/elsewhere/", version=6)
        pairs = [(project.id, wanted.fingerprint)]
        assert get_regression_groups(ENDPOINT, pairs) == [wanted]

    def test_one_query_for_many_pairs_across_projects(self, django_assert_num_queries) -> None:
        projects = ProjectFactory.create_batch(5)
        pairs = []
        for i in range(40):
            project = projects[i % 5]
            existing(project, f"/t/{i}/", version=1, active=False)
            existing(project, f"/t/{i}/", version=2)
            pairs.append((project.id, generate_fingerprint(ENDPOINT, f"/t/{i}/")))
        with django_assert_num_queries(1):
            result = get_regression_groups(ENDPOINT, pairs, active=True)
        assert len(result) == 40
        assert {rg.version for rg in result} == {2}

    def test_no_pairs_is_no_rows_and_no_query(self, django_assert_num_queries) -> None:
        existing(ProjectFactory.create())
        with django_assert_num_queries(0):
            assert get_regression_groups(ENDPOINT, []) == []


class TestNewRegression:
    @BOTH_DETECTORS
    def test_first_detection_creates_active_version_1(self, regression_type, name) -> None:
        project = ProjectFactory.create()
        breakpoint = NOW - timedelta(days=1)
        regression = detected(project, name, breakpoint=breakpoint, baseline=100, regressed=200)
        [outcome] = save(regression, regression_type=regression_type)
        fingerprint = generate_fingerprint(regression_type, name)
        [saved] = get_regression_groups(regression_type, [(project.id, fingerprint)], active=True)
        assert outcome == RegressionOutcome(
            project_id=project.id,
            fingerprint=fingerprint,
            action=CREATED,
            regression_group_id=saved.id,
            version=1,
        )
        assert (saved.date_regressed, saved.baseline, saved.regressed) == (breakpoint, 100, 200)
        assert (saved.date_added, saved.date_resolved) == (NOW, None)

    def test_outcomes_follow_input_order(self) -> None:
        project = ProjectFactory.create()
        existing(project, "/b/", active=False)
        outcomes = save(*(detected(project, n) for n in ("/c/", "/b/", "/a/")))
        assert [o.fingerprint for o in outcomes] == [
            generate_fingerprint(ENDPOINT, n) for n in ("/c/", "/b/", "/a/")
        ]
        assert [o.version for o in outcomes] == [1, 2, 1]


class TestBufferPeriod:
    @BOTH_DETECTORS
    def test_no_new_version_within_24_hours_of_the_previous_breakpoint(
        self, regression_type, name
    ) -> None:
        # Upstream's test_save_regressions_with_versions.
        project = ProjectFactory.create()
        previous = existing(
            project, name, regression_type=regression_type, active=False, date_regressed=NOW
        )
        for hours in range(1, 24):
            regression = detected(project, name, breakpoint=NOW + timedelta(hours=hours))
            [outcome] = save(regression, regression_type=regression_type)
            assert (outcome.action, outcome.skip_reason) == (SKIPPED, SkipReason.WITHIN_BUFFER)
            assert outcome.regression_group_id == previous.id
        regression = detected(project, name, breakpoint=NOW + timedelta(hours=24))
        [outcome] = save(regression, regression_type=regression_type)
        assert (outcome.action, outcome.version) == (CREATED, 2)
        assert versions(project, name, regression_type) == [(1, False), (2, True)]

    def test_buffer_counts_from_the_previous_breakpoint_not_its_resolution(self) -> None:
        project = ProjectFactory.create()
        existing(
            project,
            active=False,
            date_regressed=NOW - timedelta(days=3),
            date_resolved=NOW - timedelta(hours=1),
        )
        [outcome] = save(detected(project, breakpoint=NOW))
        assert (outcome.action, outcome.version) == (CREATED, 2)

    def test_buffer_period_is_a_keyword(self) -> None:
        project = ProjectFactory.create()
        existing(project, active=False, date_regressed=NOW - timedelta(hours=2))
        [outcome] = save(detected(project, breakpoint=NOW), buffer_period=timedelta(hours=3))
        assert outcome.skip_reason == SkipReason.WITHIN_BUFFER
        [outcome] = save(detected(project, breakpoint=NOW), buffer_period=timedelta(hours=2))
        assert (outcome.action, outcome.version) == (CREATED, 2)


class TestIssueSync:
    def test_resolved_issue_closes_its_active_version_and_the_next_is_created(self) -> None:
        project = ProjectFactory.create()
        previous = existing(project)
        create_issue_for(previous, status=GroupStatus.RESOLVED, substatus=None)
        [outcome] = save(detected(project, regressed=321))
        assert (outcome.action, outcome.version) == (RegressionAction.CLOSED_RESOLVED, 2)
        assert outcome.closed_regression_group_id == previous.id
        previous.refresh_from_db()
        assert (previous.active, previous.date_resolved, previous.date_updated) == (False, NOW, NOW)
        assert versions(project) == [(1, False), (2, True)]
        assert RegressionGroup.objects.get(id=outcome.regression_group_id).regressed == 321

    def test_resolved_issue_within_the_buffer_is_closed_and_the_next_version_waits(self) -> None:
        project = ProjectFactory.create()
        previous = existing(project, date_regressed=NOW - timedelta(hours=12))
        create_issue_for(previous, status=GroupStatus.RESOLVED, substatus=None)
        [outcome] = save(detected(project, breakpoint=NOW))
        assert (outcome.action, outcome.skip_reason) == (SKIPPED, SkipReason.WITHIN_BUFFER)
        assert outcome.closed_regression_group_id == previous.id
        assert versions(project) == [(1, False)]
        # Once the buffer is over, the now inactive version lets the next one through.
        [outcome] = save(detected(project, breakpoint=NOW + timedelta(hours=12)))
        assert (outcome.action, outcome.version) == (CREATED, 2)

    def test_only_the_resolved_ones_of_a_batch_are_closed(self) -> None:
        project = ProjectFactory.create()
        resolved, ongoing = existing(project, "/resolved/"), existing(project, "/new/")
        create_issue_for(resolved, status=GroupStatus.RESOLVED, substatus=None)
        create_issue_for(ongoing, status=GroupStatus.UNRESOLVED, substatus=GroupSubStatus.NEW)
        outcomes = save(detected(project, "/resolved/"), detected(project, "/new/"))
        assert [o.action for o in outcomes] == [RegressionAction.CLOSED_RESOLVED, SKIPPED]
        assert versions(project, "/resolved/") == [(1, False), (2, True)]
        assert versions(project, "/new/") == [(1, True)]


class TestOrphans:
    @pytest.mark.parametrize(
        ("make_orphan", "reason"),
        [
            pytest.param(lambda rg: None, MISSING, id="issue never created"),
            pytest.param(delete_issue_of, MISSING, id="issue deleted"),
            pytest.param(create_grouphash_without_group, WITHOUT_GROUP, id="issue discarded"),
        ],
    )
    def test_old_orphan_is_deactivated_and_the_next_version_created(
        self, make_orphan, reason, caplog
    ) -> None:
        caplog.set_level(logging.INFO, logger=VERSIONING_LOGGER)
        project = ProjectFactory.create()
        orphan = existing(project, date_added=NOW - timedelta(hours=25))
        make_orphan(orphan)
        [outcome] = save(detected(project))
        assert (outcome.action, outcome.version) == (RegressionAction.DEACTIVATED_ORPHAN, 2)
        assert (outcome.closed_regression_group_id, outcome.orphan_reason) == (orphan.id, reason)
        orphan.refresh_from_db()
        assert (orphan.active, orphan.date_resolved) == (False, NOW)
        assert versions(project) == [(1, False), (2, True)]
        assert versioning_records(caplog) == [
            (
                logging.WARNING,
                ORPHAN_DEACTIVATED_MESSAGE,
                {
                    "regression_group_id": orphan.id,
                    "project_id": project.id,
                    "fingerprint": orphan.fingerprint,
                    "reason": str(reason),
                },
            )
        ]

    @pytest.mark.parametrize(
        ("make_orphan", "reason"),
        [
            pytest.param(lambda rg: None, MISSING, id="issue not created yet"),
            pytest.param(create_grouphash_without_group, WITHOUT_GROUP, id="issue discarded"),
        ],
    )
    def test_young_orphan_is_left_alone(self, make_orphan, reason, caplog) -> None:
        caplog.set_level(logging.INFO, logger=VERSIONING_LOGGER)
        project = ProjectFactory.create()
        # Exactly at the cutoff is still too recent: only an older row is eligible.
        orphan = existing(project, date_added=NOW - timedelta(hours=24))
        make_orphan(orphan)
        [outcome] = save(detected(project))
        assert outcome == RegressionOutcome(
            project_id=project.id,
            fingerprint=orphan.fingerprint,
            action=SKIPPED,
            regression_group_id=orphan.id,
            version=1,
            skip_reason=SkipReason.ORPHAN_TOO_RECENT,
            orphan_reason=reason,
        )
        orphan.refresh_from_db()
        assert (orphan.active, orphan.date_resolved) == (True, None)
        assert versions(project) == [(1, True)]
        assert [(level, message) for level, message, _ in versioning_records(caplog)] == [
            (logging.INFO, ORPHAN_TOO_RECENT_MESSAGE)
        ]

    def test_grace_period_is_the_min_age_keyword(self) -> None:
        project = ProjectFactory.create()
        existing(project, date_added=NOW - timedelta(hours=2))
        [outcome] = save(detected(project), min_age=timedelta(hours=3))
        assert outcome.skip_reason == SkipReason.ORPHAN_TOO_RECENT
        [outcome] = save(detected(project), min_age=timedelta(hours=1))
        assert outcome.action == RegressionAction.DEACTIVATED_ORPHAN

    def test_default_grace_period_is_24_hours(self) -> None:
        project = ProjectFactory.create()
        young = existing(project, "/young/", date_added=NOW - timedelta(hours=23))
        old = existing(project, "/old/", date_added=NOW - timedelta(hours=24, seconds=1))
        with time_machine.travel(NOW, tick=False):
            outcomes = save_regressions_with_versions(
                regression_type=ENDPOINT,
                regressions=[detected(project, "/young/"), detected(project, "/old/")],
            )
        assert [(o.action, o.closed_regression_group_id) for o in outcomes] == [
            (SKIPPED, None),
            (RegressionAction.DEACTIVATED_ORPHAN, old.id),
        ]
        assert outcomes[0].regression_group_id == young.id

    def test_deactivated_orphan_within_the_buffer_unblocks_the_next_detection(self) -> None:
        project = ProjectFactory.create()
        orphan = existing(project, date_regressed=NOW - timedelta(hours=30))
        [outcome] = save(detected(project, breakpoint=NOW - timedelta(hours=10)))
        assert (outcome.action, outcome.skip_reason) == (SKIPPED, SkipReason.WITHIN_BUFFER)
        assert (outcome.closed_regression_group_id, outcome.orphan_reason) == (orphan.id, MISSING)
        assert versions(project) == [(1, False)]
        [outcome] = save(detected(project, breakpoint=NOW))
        assert (outcome.action, outcome.version) == (CREATED, 2)

    def test_an_issue_committed_after_the_lookup_keeps_its_row_active(self, monkeypatch) -> None:
        project = ProjectFactory.create()
        previous = existing(project)
        create_issue_for(previous)
        # The lookup ran before the issue's GroupHash was committed.
        monkeypatch.setattr(
            breakpoint_module,
            "lookup_regression_issues",
            lambda regressions: RegressionIssues(
                {rg.id: None for rg in regressions}, {rg.id: MISSING for rg in regressions}
            ),
        )
        [outcome] = save(detected(project))
        assert (outcome.action, outcome.skip_reason) == (
            SKIPPED,
            SkipReason.CHANGED_CONCURRENTLY,
        )
        assert versions(project) == [(1, True)]

    def test_only_the_orphans_of_a_project_are_deactivated(self) -> None:
        project, other_project = ProjectFactory.create_batch(2)
        orphan = existing(project)
        linked = existing(other_project)
        create_issue_for(linked, status=GroupStatus.UNRESOLVED, substatus=GroupSubStatus.NEW)
        # The same fingerprint has a live issue, but in another project: it does not count.
        assert linked.fingerprint == orphan.fingerprint
        outcomes = save(detected(project), detected(other_project))
        assert [o.action for o in outcomes] == [RegressionAction.DEACTIVATED_ORPHAN, SKIPPED]
        assert versions(other_project) == [(1, True)]


class TestQueryBudget:
    def _mixed_batch(self, per_kind: int) -> list[DetectedRegression]:
        project = ProjectFactory.create()
        regressions = []
        for i in range(per_kind):
            existing(project, f"/inactive/{i}/", active=False)
            orphan = existing(project, f"/orphan/{i}/")
            if i % 2:
                create_grouphash_without_group(orphan)
            create_issue_for(
                existing(project, f"/resolved/{i}/"), status=GroupStatus.RESOLVED, substatus=None
            )
            create_issue_for(
                existing(project, f"/ongoing/{i}/"),
                status=GroupStatus.UNRESOLVED,
                substatus=GroupSubStatus.ONGOING,
            )
            create_issue_for(
                existing(project, f"/new/{i}/"),
                status=GroupStatus.UNRESOLVED,
                substatus=GroupSubStatus.NEW,
            )
            regressions += [
                detected(project, f"/{kind}/{i}/")
                for kind in ("first", "inactive", "orphan", "resolved", "ongoing", "new")
            ]
        return regressions

    @pytest.mark.parametrize("per_kind", [1, 12])
    def test_a_batch_costs_the_same_statements_whatever_its_size(
        self, per_kind, django_assert_num_queries
    ) -> None:
        regressions = self._mixed_batch(per_kind)
        # savepoint, newest versions, issue lookup (its reasons included), closing, the orphans'
        # row locks, their deactivation, insert, release: nothing is read twice.
        with django_assert_num_queries(8):
            outcomes = save(*regressions)
        counts = {action: sum(o.action == action for o in outcomes) for action in RegressionAction}
        assert counts == {
            CREATED: 2 * per_kind,
            RegressionAction.DEACTIVATED_ORPHAN: per_kind,
            RegressionAction.CLOSED_RESOLVED: per_kind,
            # The breakpoint path never escalates: an ongoing issue is skipped like a new one.
            RegressionAction.ESCALATED: 0,
            SKIPPED: 2 * per_kind,
        }

    def test_nothing_to_look_up_or_close_is_three_statements_plus_the_transaction(
        self, django_assert_num_queries
    ) -> None:
        project = ProjectFactory.create()
        with django_assert_num_queries(4):
            save(detected(project, "/a/"), detected(project, "/b/"))
        assert versions(project, "/a/") == [(1, True)]

    def test_larger_inputs_go_in_batches_of_batch_size(self, monkeypatch) -> None:
        monkeypatch.setattr(breakpoint_module, "BATCH_SIZE", 2)
        regressions = self._mixed_batch(2)
        outcomes = save(*regressions)
        assert [o.version for o in outcomes] == [1, 2, 2, 2, 1, 1] * 2
        assert [o.orphan_reason for o in outcomes if o.orphan_reason] == [MISSING, WITHOUT_GROUP]


class TestInput:
    def test_no_regressions_is_no_query(self, django_assert_num_queries) -> None:
        with django_assert_num_queries(0):
            assert save() == []

    def test_the_same_regression_twice_raises_before_any_query(
        self, django_assert_num_queries
    ) -> None:
        project = ProjectFactory.create()
        with (
            django_assert_num_queries(0),
            pytest.raises(ValueError, match="regression detected twice"),
        ):
            save(detected(project), detected(project))

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"now": datetime(2026, 3, 1)}, "now must be timezone-aware"),
            ({"min_age": timedelta(hours=-1)}, "min_age must not be negative"),
            ({"buffer_period": timedelta(hours=-1)}, "buffer_period must not be negative"),
        ],
    )
    def test_bad_options_raise(self, options, message) -> None:
        project = ProjectFactory.create()
        with pytest.raises(ValueError, match=message):
            save(detected(project), **options)
        assert versions(project) == []

    def test_naive_breakpoint_raises(self) -> None:
        project = ProjectFactory.create()
        with pytest.raises(ValueError, match="breakpoint must be timezone-aware"):
            save(detected(project, breakpoint=datetime(2026, 3, 1)))
