"""The function detector's flow: a version is saved only with its emitted occurrence."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from regression_tracking.fingerprints import generate_fingerprint
from regression_tracking.models import GroupStatus, RegressionGroup, RegressionType
from regression_tracking.orphans import is_orphan
from regression_tracking.services import (
    DetectedRegression,
    RegressionAction,
    SkipReason,
    detect_function_change_points,
)
from regression_tracking.tasks.statistical_detectors import (
    BREAKPOINT_DETECTED_METRIC,
    BREAKPOINT_EMITTED_METRIC,
    NOT_EMITTED_METRIC,
)
from tests.factories import ProjectFactory, create_issue_for

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FUNCTION = RegressionType.FUNCTION


class IssuePlatform:
    """Emits occurrences as the issue platform would turn them into issues: for each emitted
    regression, a Group and its GroupHash under md5 of the fingerprint."""

    def __init__(self, *, drop_every: int | None = None, fail: bool = False) -> None:
        self.drop_every = drop_every
        self.fail = fail
        self.calls: list[list[DetectedRegression]] = []

    def __call__(self, regressions: Sequence[DetectedRegression]) -> Collection[DetectedRegression]:
        self.calls.append(list(regressions))
        if self.fail:
            raise RuntimeError("profiling service answered 500")
        emitted = [
            r
            for i, r in enumerate(regressions)
            # No example profile for every third regression.
            if self.drop_every is None or i % self.drop_every != 0
        ]
        for regression in emitted:
            create_issue_for(
                RegressionGroup(
                    project_id=regression.project_id,
                    fingerprint=generate_fingerprint(FUNCTION, regression.name),
                )
            )
        return emitted


def regressions(project, count: int) -> list[DetectedRegression]:
    return [
        DetectedRegression(
            project_id=project.id,
            name=1000 + i,
            breakpoint=NOW - timedelta(hours=12),
            baseline=100_000_000,
            regressed=200_000_000,
        )
        for i in range(count)
    ]


def orphans() -> int:
    return RegressionGroup.objects.filter(is_orphan()).count()


def test_only_emitted_regressions_get_a_version_and_the_next_run_saves_the_rest(
    metrics_backend,
) -> None:
    project = ProjectFactory.create()
    detected = regressions(project, 9)
    dropping = IssuePlatform(drop_every=3)
    outcomes = detect_function_change_points(regressions=detected, emit=dropping, now=NOW)
    assert [o.action for o in outcomes].count(RegressionAction.CREATED) == 6
    assert [o.skip_reason for o in outcomes].count(SkipReason.NOT_EMITTED) == 3
    assert RegressionGroup.objects.count() == 6
    assert orphans() == 0
    assert metrics_backend.total(BREAKPOINT_DETECTED_METRIC) == 6
    assert metrics_backend.total(BREAKPOINT_EMITTED_METRIC) == 6
    assert metrics_backend.total(NOT_EMITTED_METRIC) == 3

    # The next detection run: the saved ones have an active version with an issue (skipped);
    # the three left out have nothing blocking them and are emitted and saved now.
    emitting = IssuePlatform()
    outcomes = detect_function_change_points(regressions=detected, emit=emitting, now=NOW)
    assert [len(call) for call in emitting.calls] == [3]
    assert [o.action for o in outcomes].count(RegressionAction.CREATED) == 3
    assert [o.skip_reason for o in outcomes].count(SkipReason.ISSUE_NOT_RESOLVED) == 6
    assert RegressionGroup.objects.count() == 9
    assert orphans() == 0


def test_a_failing_profiling_service_saves_nothing() -> None:
    project = ProjectFactory.create()
    detected = regressions(project, 4)
    outcomes = detect_function_change_points(
        regressions=detected, emit=IssuePlatform(fail=True), now=NOW
    )
    assert {o.skip_reason for o in outcomes} == {SkipReason.NOT_EMITTED}
    assert RegressionGroup.objects.count() == 0
    outcomes = detect_function_change_points(regressions=detected, emit=IssuePlatform(), now=NOW)
    assert {o.action for o in outcomes} == {RegressionAction.CREATED}
    assert orphans() == 0


def test_a_resolved_version_is_closed_only_when_the_next_is_emitted() -> None:
    project = ProjectFactory.create()
    [regression] = regressions(project, 1)
    previous = RegressionGroup.objects.create(
        project=project,
        type=FUNCTION,
        fingerprint=generate_fingerprint(FUNCTION, regression.name),
        version=1,
        date_regressed=NOW - timedelta(days=5),
        baseline=1,
        regressed=2,
    )
    create_issue_for(previous, status=GroupStatus.RESOLVED, substatus=None)
    detect_function_change_points(regressions=[regression], emit=IssuePlatform(fail=True), now=NOW)
    previous.refresh_from_db()
    # Nothing of the failed regression was written: the resolved version is still active, and
    # the next run closes it and saves version 2.
    assert previous.active
    [outcome] = detect_function_change_points(regressions=[regression], emit=lambda rs: rs, now=NOW)
    assert (outcome.action, outcome.version) == (RegressionAction.CLOSED_RESOLVED, 2)


def test_an_orphan_is_deactivated_only_when_the_next_is_emitted() -> None:
    project = ProjectFactory.create()
    [regression] = regressions(project, 1)
    orphan = RegressionGroup.objects.create(
        project=project,
        type=FUNCTION,
        fingerprint=generate_fingerprint(FUNCTION, regression.name),
        version=1,
        date_regressed=NOW - timedelta(days=5),
        date_added=NOW - timedelta(days=2),
        baseline=1,
        regressed=2,
    )
    [outcome] = detect_function_change_points(
        regressions=[regression], emit=IssuePlatform(fail=True), now=NOW
    )
    orphan.refresh_from_db()
    # The emission failed: the orphan is not deactivated, nothing is created.
    assert (outcome.skip_reason, orphan.active, orphans()) == (SkipReason.NOT_EMITTED, True, 1)
    # Emitted (its issue not ingested yet): the orphan is deactivated and version 2 saved.
    [outcome] = detect_function_change_points(regressions=[regression], emit=lambda rs: rs, now=NOW)
    orphan.refresh_from_db()
    assert (outcome.action, outcome.version) == (RegressionAction.DEACTIVATED_ORPHAN, 2)
    assert not orphan.active


def test_nothing_due_calls_no_emitter() -> None:
    project = ProjectFactory.create()
    emitter = IssuePlatform()
    detect_function_change_points(regressions=regressions(project, 2), emit=emitter, now=NOW)
    emitter.calls.clear()
    # Both now have an active version with a new issue: nothing to emit.
    detect_function_change_points(regressions=regressions(project, 2), emit=emitter, now=NOW)
    assert emitter.calls == []
