"""The function detector's change-point flow, with no RegressionGroup born an orphan.

Upstream's ``_detect_function_change_points`` (``src/sentry/tasks/statistical_detectors.py``)
saves the versions first (``save_regressions_with_versions``) and then calls
``emit_function_regression_issue``, which skips a regression without an example profile and drops
all of them when the profiling service answers non-200: those versions have no occurrence, so no
issue, by construction. Here the versions are decided first, the occurrences of the ones due are
emitted, and only the emitted ones are saved; a regression whose emission failed leaves nothing
behind, so the next detection run retries it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from django.db import router, transaction

from regression_tracking.models import RegressionGroup, RegressionType
from regression_tracking.ops import metrics
from regression_tracking.orphans import GRACE_PERIOD
from regression_tracking.statistical_detectors.breakpoint import (
    BATCH_SIZE,
    DetectedRegression,
    Key,
    PlannedVersion,
    RegressionOutcome,
    apply_versions,
    keyed_regressions,
    log_completed,
    plan_versions,
    skipped_outcome,
    validated_now,
)
from regression_tracking.statistical_detectors.decisions import (
    BUFFER_PERIOD,
    SkipReason,
    detector_for,
)

logger = logging.getLogger("regression_tracking.services.versioning")

# Upstream's counters of this flow (tags source, kind): breakpoints versioned, occurrences emitted.
BREAKPOINT_DETECTED_METRIC = "statistical_detectors.breakpoint.detected"
BREAKPOINT_EMITTED_METRIC = "statistical_detectors.breakpoint.emitted"
# New here: regressions whose occurrence was not emitted, so no version was saved.
NOT_EMITTED_METRIC = "statistical_detectors.breakpoint.not_emitted"
EMISSION_FAILED_MESSAGE = "Regression occurrences could not be emitted"


class OccurrenceEmitter(Protocol):
    """Sends the occurrences of these regressions to the issue platform (in Sentry:
    ``emit_function_regression_issue``); returns the ones it emitted. Raising emits none."""

    def __call__(
        self, regressions: Sequence[DetectedRegression]
    ) -> Collection[DetectedRegression]: ...


def detect_function_change_points(
    *,
    regressions: Iterable[DetectedRegression],
    emit: OccurrenceEmitter,
    now: datetime | None = None,
    buffer_period: timedelta = BUFFER_PERIOD,
    min_age: timedelta = GRACE_PERIOD,
    regression_type: RegressionType = RegressionType.FUNCTION,
) -> list[RegressionOutcome]:
    """Decide the versions, emit the occurrences of the new ones, save only the emitted ones.

    Per batch of ``BATCH_SIZE``: the decisions (two statements), one call of ``emit`` for the
    regressions that would get a version, then one transaction that writes the emitted ones and
    every decision that creates nothing (a resolved or orphaned version closed within the buffer).
    A regression not emitted is skipped as ``occurrence_not_emitted`` and nothing of it is written.
    """
    now = validated_now(now, buffer_period=buffer_period, min_age=min_age)
    detector = detector_for(regression_type)
    keyed = keyed_regressions(regression_type, regressions)
    outcomes: dict[Key, RegressionOutcome] = {}
    items = list(keyed.items())
    emitted_count = 0
    for start in range(0, len(items), BATCH_SIZE):
        batch = dict(items[start : start + BATCH_SIZE])
        planned = plan_versions(
            regression_type, batch, now=now, buffer_period=buffer_period, min_age=min_age
        )
        due = [p for p in planned if p.decision.version is not None]
        emitted = _emit(emit, [p.regression for p in due])
        emitted_count += len(emitted)
        kept: list[PlannedVersion] = []
        for p in planned:
            if p.decision.version is not None and p.regression not in emitted:
                outcomes[p.key] = skipped_outcome(p, SkipReason.NOT_EMITTED)
            else:
                kept.append(p)
        with transaction.atomic(using=router.db_for_write(RegressionGroup)):
            outcomes.update(apply_versions(regression_type, kept, now=now, min_age=min_age))
    not_emitted = sum(1 for o in outcomes.values() if o.skip_reason == SkipReason.NOT_EMITTED)
    versioned = sum(1 for o in outcomes.values() if o.skip_reason is None)
    metrics.incr(BREAKPOINT_DETECTED_METRIC, amount=versioned, tags=detector.tags)
    metrics.incr(BREAKPOINT_EMITTED_METRIC, amount=emitted_count, tags=detector.tags)
    metrics.incr(NOT_EMITTED_METRIC, amount=not_emitted, tags=detector.tags)
    log_completed(regression_type, outcomes.values())
    return [outcomes[key] for key in keyed]


def _emit(
    emit: OccurrenceEmitter, regressions: Sequence[DetectedRegression]
) -> set[DetectedRegression]:
    if not regressions:
        return set()
    try:
        emitted = set(emit(regressions))
    except Exception:
        # As upstream when the profiling service answers non-200: none emitted, so none saved
        # (the next run retries them).
        logger.warning(EMISSION_FAILED_MESSAGE, exc_info=True, extra={"count": len(regressions)})
        return set()
    return emitted & set(regressions)
