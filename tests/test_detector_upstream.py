"""Upstream's detector tests replayed by name, plus the orphan cases of each path.

Upstream: ``tests/sentry/tasks/test_statistical_detectors.py`` (see PORTING.md for the version).
Its tests call the detector classes' generators with ``BreakpointData`` dicts and mock Kafka; here
the same inputs go through the adapter, the producer records the status changes, and the
assertions are upstream's, translated to this project's outcomes where the surface differs
(upstream's ``get_regression_versions`` yields the version to follow, ``(v, prev_date, data)``;
``save_regressions_with_versions`` here saves version ``v + 1`` and returns an outcome).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from regression_tracking.fingerprints import generate_fingerprint
from regression_tracking.models import (
    GroupStatus,
    GroupSubStatus,
    RegressionGroup,
    RegressionType,
)
from regression_tracking.ops.log import record_extra
from regression_tracking.services import (
    ORPHAN_DEACTIVATED_MESSAGE,
    BreakpointData,
    OrphanReason,
    RegressionAction,
    SkipReason,
    StatusChange,
    TrendCandidate,
    from_breakpoint_data,
    get_regression_groups,
    process_status_change,
    redirect_escalations,
    redirect_resolutions,
    save_regressions_with_versions,
)
from regression_tracking.statistical_detectors import (
    AUTO_RESOLVED_METRIC,
    BREAKPOINT_SKIPPED_METRIC,
    DROPPED_GROUP_NOT_FOUND_METRIC,
    ESCALATED_METRIC,
    RecordingProducer,
    from_breakpoints,
)
from tests.factories import ProjectFactory, create_grouphash_without_group, create_issue_for

pytestmark = pytest.mark.django_db

# Upstream's fixture.
TIMESTAMP = datetime(2023, 8, 1, 12, 7, 42, 521000, tzinfo=UTC)
ENDPOINT, FUNCTION = RegressionType.ENDPOINT, RegressionType.FUNCTION
VERSIONING_LOGGER = "regression_tracking.services.versioning"

DETECTORS = pytest.mark.parametrize(
    "regression_type",
    [pytest.param(ENDPOINT, id="endpoint"), pytest.param(FUNCTION, id="function")],
)
ISSUE_STATES = [
    pytest.param(GroupStatus.UNRESOLVED, GroupSubStatus.ESCALATING, id="escalating"),
    pytest.param(GroupStatus.UNRESOLVED, GroupSubStatus.ONGOING, id="ongoing"),
    pytest.param(GroupStatus.UNRESOLVED, GroupSubStatus.REGRESSED, id="regressed"),
    pytest.param(GroupStatus.UNRESOLVED, GroupSubStatus.NEW, id="new"),
    pytest.param(GroupStatus.RESOLVED, None, id="resolved"),
    pytest.param(GroupStatus.IGNORED, GroupSubStatus.UNTIL_ESCALATING, id="until escalating"),
    pytest.param(GroupStatus.IGNORED, GroupSubStatus.UNTIL_CONDITION_MET, id="until condition met"),
    pytest.param(GroupStatus.IGNORED, GroupSubStatus.FOREVER, id="forever"),
]
ORPHAN_KINDS = [
    pytest.param(lambda rg: None, OrphanReason.MISSING_GROUPHASH, id="issue never created"),
    pytest.param(
        lambda rg: create_issue_for(rg).group.delete(),  # type: ignore[union-attr]
        OrphanReason.MISSING_GROUPHASH,
        id="issue deleted",
    ),
    pytest.param(
        create_grouphash_without_group, OrphanReason.GROUPHASH_WITHOUT_GROUP, id="issue discarded"
    ),
]


def breakpoint_data(
    project: Any, name: str | int, breakpoint: float, **fields: Any
) -> BreakpointData:
    data: dict[str, Any] = {
        "absolute_percentage_change": 5.0,
        "aggregate_range_1": 100000000.0,
        "aggregate_range_2": 500000000.0,
        "breakpoint": breakpoint,
        "project": str(project.id),
        "transaction": str(name),
        "trend_difference": 400000000.0,
        "trend_percentage": 5.0,
        "unweighted_p_value": 0.0,
        "unweighted_t_value": -float("inf"),
        **fields,
    }
    return data  # type: ignore[return-value]


def save(regression_type: RegressionType, *data: BreakpointData, now: datetime = TIMESTAMP):
    return save_regressions_with_versions(
        regression_type=regression_type,
        regressions=from_breakpoints(regression_type, data),
        now=now,
    )


def create_version(project: Any, regression_type: RegressionType, name: str | int, **fields: Any):
    fields.setdefault("date_added", TIMESTAMP)
    fields.setdefault("date_regressed", TIMESTAMP)
    fields.setdefault("baseline", 100000000.0)
    fields.setdefault("regressed", 500000000.0)
    return RegressionGroup.objects.create(
        type=regression_type,
        project=project,
        fingerprint=generate_fingerprint(regression_type, name),
        date_updated=fields["date_added"],
        **fields,
    )


def versions(project: Any, regression_type: RegressionType, name: str | int):
    return list(
        RegressionGroup.objects.filter(
            project=project,
            type=regression_type,
            fingerprint=generate_fingerprint(regression_type, name),
        )
        .order_by("version")
        .values_list("version", "active")
    )


class TestGetRegressionVersions:
    """Upstream's test_get_regression_versions: which version the breakpoint path yields."""

    @DETECTORS
    @pytest.mark.parametrize(
        ("regression_groups", "expected_version"),
        [
            pytest.param([], 1, id="no existing"),
            pytest.param([(1, False, "1"), (2, False, "1")], 3, id="existing inactive"),
            # Upstream: nothing yielded. The active version has no issue but was added now: it
            # is inside the grace period, so the fix leaves it alone too.
            pytest.param([(1, False, "1"), (2, True, "1")], None, id="existing active"),
            pytest.param(
                [
                    (1, False, "1"),
                    (2, False, "1"),
                    (1, False, "2"),
                    (2, False, "2"),
                    (3, False, "2"),
                    (4, True, "2"),
                ],
                3,
                id="mixed active and inactive",
            ),
            pytest.param([(1, True, "1"), (2, False, "1")], 3, id="use latest version"),
        ],
    )
    def test_get_regression_versions(
        self, regression_type, regression_groups, expected_version, metrics_backend
    ) -> None:
        project = ProjectFactory.create()
        for version, active, name in regression_groups:
            create_version(project, regression_type, name, version=version, active=active)
        # Upstream's breakpoint precedes the saved versions' date_regressed (it tests only the
        # yield); one past the buffer makes the version saved here.
        [outcome] = save(
            regression_type,
            breakpoint_data(project, "1", (TIMESTAMP + timedelta(days=1)).timestamp()),
        )
        if expected_version is None:
            assert (outcome.action, outcome.skip_reason) == (
                RegressionAction.SKIPPED,
                SkipReason.ORPHAN_TOO_RECENT,
            )
            assert metrics_backend.total(BREAKPOINT_SKIPPED_METRIC) == 1
        else:
            assert (outcome.action, outcome.version) == (RegressionAction.CREATED, expected_version)
            assert metrics_backend.total(BREAKPOINT_SKIPPED_METRIC) == 0

    @DETECTORS
    @pytest.mark.parametrize(("make_orphan", "reason"), ORPHAN_KINDS)
    def test_existing_active_without_issue_past_the_grace_period(
        self, regression_type, make_orphan, reason, caplog
    ) -> None:
        caplog.set_level(logging.INFO, logger="regression_tracking")
        project = ProjectFactory.create()
        create_version(project, regression_type, "1", version=1, active=False)
        orphan = create_version(
            project,
            regression_type,
            "1",
            version=2,
            active=True,
            date_added=TIMESTAMP - timedelta(days=2),
        )
        make_orphan(orphan)
        caplog.clear()
        [outcome] = save(
            regression_type,
            breakpoint_data(project, "1", (TIMESTAMP + timedelta(days=1)).timestamp()),
        )
        assert (outcome.action, outcome.version, outcome.orphan_reason) == (
            RegressionAction.DEACTIVATED_ORPHAN,
            3,
            reason,
        )
        assert versions(project, regression_type, "1") == [(1, False), (2, False), (3, True)]
        # One WARNING for the orphan, naming it: one Sentry event, not two.
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert [(r.getMessage(), r.regression_group_id) for r in warnings] == [
            (ORPHAN_DEACTIVATED_MESSAGE, orphan.id)
        ]


class TestGetRegressionVersionsActive:
    """Upstream's test_get_regression_versions_active: only a RESOLVED issue lets a new version
    through; every other state yields nothing and is counted in breakpoint.skipped."""

    @DETECTORS
    @pytest.mark.parametrize(("status", "substatus"), ISSUE_STATES)
    def test_get_regression_versions_active(
        self, regression_type, status, substatus, metrics_backend
    ) -> None:
        project = ProjectFactory.create()
        name = "transaction_1" if regression_type == ENDPOINT else 123
        active = create_version(
            project, regression_type, name, version=1, active=True, baseline=1000, regressed=2000
        )
        create_issue_for(active, status=status, substatus=substatus)
        [outcome] = save(
            regression_type,
            breakpoint_data(project, name, (TIMESTAMP + timedelta(days=1)).timestamp()),
        )
        active.refresh_from_db()
        if status == GroupStatus.RESOLVED:
            assert (outcome.action, outcome.version) == (RegressionAction.CLOSED_RESOLVED, 2)
            assert (active.active, active.date_resolved) == (False, TIMESTAMP)
        else:
            assert (outcome.action, outcome.skip_reason) == (
                RegressionAction.SKIPPED,
                SkipReason.ISSUE_NOT_RESOLVED,
            )
            assert versions(project, regression_type, name) == [(1, True)]
        source, kind = (
            ("transaction", "endpoint") if regression_type == ENDPOINT else ("profile", "function")
        )
        assert metrics_backend.total(BREAKPOINT_SKIPPED_METRIC, source=source, kind=kind) == 1


class TestSaveRegressionsWithVersions:
    @DETECTORS
    def test_save_regressions_with_versions(self, regression_type) -> None:
        project = ProjectFactory.create()
        name = "transaction_1" if regression_type == ENDPOINT else "123"
        create_version(
            project, regression_type, name, version=1, active=False, baseline=100, regressed=300
        )
        # A buffer on issue creation: for 24 hours after the first regression, nothing.
        for hours in range(1, 24):
            at = TIMESTAMP + timedelta(hours=hours)
            [outcome] = save(
                regression_type, breakpoint_data(project, name, at.timestamp()), now=at
            )
            assert outcome.skip_reason == SkipReason.WITHIN_BUFFER
        at = TIMESTAMP + timedelta(hours=24)
        [outcome] = save(regression_type, breakpoint_data(project, name, at.timestamp()), now=at)
        assert (outcome.action, outcome.version) == (RegressionAction.CREATED, 2)


def trend(project: Any, name: str | int, moving_average: float) -> TrendCandidate:
    return TrendCandidate(project_id=project.id, name=name, moving_average=moving_average)


class TestNewRegressionGroup:
    @DETECTORS
    def test_new_regression_group(self, regression_type, metrics_backend) -> None:
        project = ProjectFactory.create()
        name = "transaction_1" if regression_type == ENDPOINT else "123"
        data = breakpoint_data(
            project,
            name,
            (TIMESTAMP - timedelta(days=1)).timestamp(),
            aggregate_range_1=100,
            aggregate_range_2=200,
        )
        [outcome] = save(regression_type, data)
        assert outcome.action == RegressionAction.CREATED
        fingerprint = generate_fingerprint(regression_type, name)
        assert (
            len(get_regression_groups(regression_type, [(project.id, fingerprint)], active=True))
            == 1
        )

        producer = RecordingProducer()
        # A buffer on auto-resolution: for 24 hours after the regression, no resolution.
        for hours in reversed(range(1, 24)):
            at = TIMESTAMP - timedelta(hours=hours)
            passed_on = redirect_resolutions(
                regression_type=regression_type,
                candidates=[trend(project, name, 100)],
                timestamp=at,
                producer=producer,
            )
            assert len(passed_on) == 1
            assert producer.produced == []
        # Once the buffer is over, it auto-resolves: redirected, so nothing is passed on.
        passed_on = redirect_resolutions(
            regression_type=regression_type,
            candidates=[trend(project, name, 100)],
            timestamp=TIMESTAMP,
            producer=producer,
        )
        assert passed_on == []
        assert producer.produced == [
            StatusChange((fingerprint,), project.id, GroupStatus.RESOLVED, None)
        ]
        [resolved] = RegressionGroup.objects.filter(project=project)
        assert (resolved.active, resolved.date_resolved) == (False, TIMESTAMP)
        assert metrics_backend.total(AUTO_RESOLVED_METRIC) == 1


ESCALATION_VALUES = {ENDPOINT: (100, 300, 500), FUNCTION: (100_000_000, 300_000_000, 500_000_000)}
SHOULD_ESCALATE = {
    (GroupStatus.UNRESOLVED, GroupSubStatus.ONGOING),
    (GroupStatus.IGNORED, GroupSubStatus.UNTIL_ESCALATING),
}


class TestRedirectEscalations:
    @DETECTORS
    @pytest.mark.parametrize(("status", "substatus"), ISSUE_STATES)
    def test_redirect_escalations(
        self, regression_type, status, substatus, metrics_backend
    ) -> None:
        project = ProjectFactory.create()
        name = "transaction_1" if regression_type == ENDPOINT else 123
        baseline, regressed, escalated = ESCALATION_VALUES[regression_type]
        v1 = create_version(
            project,
            regression_type,
            name,
            version=1,
            active=True,
            date_regressed=TIMESTAMP - timedelta(days=1),
            baseline=baseline,
            regressed=regressed,
        )
        create_issue_for(v1, status=status, substatus=substatus)
        producer = RecordingProducer()
        passed_on = redirect_escalations(
            regression_type=regression_type,
            candidates=[trend(project, name, escalated)],
            timestamp=TIMESTAMP,
            producer=producer,
        )
        assert passed_on == []
        if (status, substatus) in SHOULD_ESCALATE:
            assert producer.produced == [
                StatusChange(
                    (v1.fingerprint,), project.id, GroupStatus.UNRESOLVED, GroupSubStatus.ESCALATING
                )
            ]
            assert versions(project, regression_type, name) == [(1, False), (2, True)]
            v2 = RegressionGroup.objects.get(project=project, version=2)
            assert (v2.date_regressed, v2.baseline, v2.regressed) == (
                TIMESTAMP,
                regressed,
                escalated,
            )
            assert metrics_backend.total(ESCALATED_METRIC) == 1
        else:
            # RESOLVED included: no escalation.
            assert producer.produced == []
            assert versions(project, regression_type, name) == [(1, True)]
            assert metrics_backend.total(ESCALATED_METRIC) == 0

    @DETECTORS
    @pytest.mark.parametrize(("make_orphan", "reason"), ORPHAN_KINDS)
    def test_orphan_past_the_grace_period_is_deactivated_and_passed_on(
        self, regression_type, make_orphan, reason, caplog
    ) -> None:
        project = ProjectFactory.create()
        baseline, regressed, escalated = ESCALATION_VALUES[regression_type]
        orphan = create_version(
            project,
            regression_type,
            "7",
            version=1,
            date_added=TIMESTAMP - timedelta(days=2),
            date_regressed=TIMESTAMP - timedelta(days=2),
            baseline=baseline,
            regressed=regressed,
        )
        make_orphan(orphan)
        caplog.set_level(logging.INFO, logger="regression_tracking")
        producer = RecordingProducer()
        candidate = trend(project, "7", escalated)
        passed_on = redirect_escalations(
            regression_type=regression_type,
            candidates=[candidate],
            timestamp=TIMESTAMP,
            producer=producer,
        )
        # No issue to escalate: no status change; the trend goes on like one without a version.
        assert passed_on == [candidate]
        assert producer.produced == []
        assert versions(project, regression_type, "7") == [(1, False)]
        [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert (warning.getMessage(), record_extra(warning)["reason"]) == (
            ORPHAN_DEACTIVATED_MESSAGE,
            str(reason),
        )

    def test_young_orphan_goes_no_further(self) -> None:
        project = ProjectFactory.create()
        orphan = create_version(
            project,
            ENDPOINT,
            "/a/",
            version=1,
            date_added=TIMESTAMP - timedelta(hours=2),
            date_regressed=TIMESTAMP - timedelta(days=2),
            baseline=100,
            regressed=300,
        )
        passed_on = redirect_escalations(
            regression_type=ENDPOINT,
            candidates=[trend(project, "/a/", 500)],
            timestamp=TIMESTAMP,
            producer=RecordingProducer(),
        )
        assert passed_on == []
        orphan.refresh_from_db()
        assert orphan.active

    def test_within_the_buffer_no_escalation(self) -> None:
        project = ProjectFactory.create()
        v1 = create_version(
            project,
            ENDPOINT,
            "/a/",
            version=1,
            date_regressed=TIMESTAMP - timedelta(hours=23),
            baseline=100,
            regressed=300,
        )
        create_issue_for(v1, status=GroupStatus.UNRESOLVED, substatus=GroupSubStatus.ONGOING)
        candidate = trend(project, "/a/", 500)
        producer = RecordingProducer()
        passed_on = redirect_escalations(
            regression_type=ENDPOINT, candidates=[candidate], timestamp=TIMESTAMP, producer=producer
        )
        assert passed_on == [candidate]
        assert producer.produced == []


class TestDetectFunctionTrendsAutoResolution:
    def _hours_back_to_baseline(self, project: Any, producer: RecordingProducer) -> None:
        # The moving average falls from the regressed level back to the baseline, hour by hour.
        for hour, moving_average in enumerate([300, 250, 200, 150, 120, 108, 101]):
            redirect_resolutions(
                regression_type=FUNCTION,
                candidates=[trend(project, 123, moving_average)],
                timestamp=TIMESTAMP + timedelta(hours=hour),
                producer=producer,
            )

    def test_detect_function_trends_auto_resolution(self) -> None:
        project = ProjectFactory.create()
        version = create_version(
            project,
            FUNCTION,
            123,
            version=1,
            date_regressed=TIMESTAMP - timedelta(hours=140),
            baseline=100,
            regressed=300,
        )
        create_issue_for(version)
        producer = RecordingProducer()
        self._hours_back_to_baseline(project, producer)
        assert producer.produced == [
            StatusChange((f"{123:x}",), project.id, GroupStatus.RESOLVED, None)
        ]
        # The consumer resolves the issue.
        group = process_status_change(producer.produced[0])
        assert group is not None
        assert group.status == GroupStatus.RESOLVED

    def test_orphan_auto_resolves_and_the_consumer_drops_its_status_change(
        self, metrics_backend, caplog
    ) -> None:
        project = ProjectFactory.create()
        create_version(
            project,
            FUNCTION,
            123,
            version=1,
            date_regressed=TIMESTAMP - timedelta(hours=140),
            baseline=100,
            regressed=300,
        )
        producer = RecordingProducer()
        self._hours_back_to_baseline(project, producer)
        assert versions(project, FUNCTION, 123) == [(1, False)]
        caplog.set_level(logging.INFO, logger="regression_tracking")
        assert process_status_change(producer.produced[0]) is None
        assert metrics_backend.total(DROPPED_GROUP_NOT_FOUND_METRIC) == 1
        assert [r.getMessage() for r in caplog.records] == ["status_change.dropped_group_not_found"]


class TestBreakpointDataAdapter:
    def test_upstream_shape(self) -> None:
        regression = from_breakpoint_data(
            FUNCTION, breakpoint_data(ProjectFactory.build(id=42), "12345", 1687323600.0)
        )
        assert (regression.project_id, regression.name, regression.breakpoint) == (
            42,
            12345,
            datetime(2023, 6, 21, 5, 0, tzinfo=UTC),
        )
        assert (regression.baseline, regression.regressed) == (100000000.0, 500000000.0)

    @pytest.mark.parametrize(
        ("field", "value", "message"),
        [
            ("project", "p1", "project is not an integer id"),
            ("transaction", "foo", "function id is not an integer"),
            ("breakpoint", float("nan"), "breakpoint is not a finite unix time"),
        ],
    )
    def test_bad_fields_raise(self, field, value, message) -> None:
        data = {**breakpoint_data(ProjectFactory.build(id=1), "1", 1687323600.0), field: value}
        with pytest.raises(ValueError, match=message):
            from_breakpoint_data(FUNCTION, data)
