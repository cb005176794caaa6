"""Upstream's input shape: ``BreakpointData`` dicts from the breakpoint service (Seer)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TypedDict

from regression_tracking.models import RegressionType
from regression_tracking.statistical_detectors.breakpoint import DetectedRegression


class BreakpointData(TypedDict):
    """Upstream's ``sentry.seer.breakpoints.BreakpointData`` (the keys this project reads and
    the ones upstream sends on to the issue platform)."""

    project: str
    # An endpoint's transaction name, or a function's id as a decimal string.
    transaction: str
    aggregate_range_1: float
    aggregate_range_2: float
    unweighted_t_value: float
    unweighted_p_value: float
    trend_percentage: float
    absolute_percentage_change: float
    trend_difference: float
    # Unix seconds, as upstream's ``datetime.fromtimestamp(regression["breakpoint"], UTC)``.
    breakpoint: float


def from_breakpoint_data(
    regression_type: RegressionType, data: BreakpointData
) -> DetectedRegression:
    """One ``BreakpointData`` as a ``DetectedRegression``; ``ValueError`` names a bad field."""
    try:
        project_id = int(data["project"])
    except (TypeError, ValueError):
        raise ValueError(f"project is not an integer id: {data['project']!r}") from None
    name: str | int = data["transaction"]
    if regression_type == RegressionType.FUNCTION:
        try:
            name = int(data["transaction"])
        except (TypeError, ValueError):
            raise ValueError(f"function id is not an integer: {data['transaction']!r}") from None
    breakpoint = float(data["breakpoint"])
    if not math.isfinite(breakpoint):
        raise ValueError(f"breakpoint is not a finite unix time: {data['breakpoint']!r}")
    return DetectedRegression(
        project_id=project_id,
        name=name,
        breakpoint=datetime.fromtimestamp(breakpoint, UTC),
        baseline=float(data["aggregate_range_1"]),
        regressed=float(data["aggregate_range_2"]),
    )


def from_breakpoints(
    regression_type: RegressionType, breakpoints: Iterable[BreakpointData]
) -> list[DetectedRegression]:
    return [from_breakpoint_data(regression_type, data) for data in breakpoints]
