"""Every site the port writes, in the order they are located and applied."""

from __future__ import annotations

from pathlib import Path

from port.base import Fixer, NewFile, Site
from port.fixers import (
    breakpoint_versions,
    cleanup_task,
    escalations,
    function_change_points,
    option,
    schedule,
)
from port.fixers.common import DEFAULTS, DETECTOR, ORPHANS, SERVER, TASKS

TEMPLATES = Path(__file__).parent / "templates"


def _template(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


SITES: list[Site] = [
    NewFile("orphans", ORPHANS, _template("orphans.py.in")),
    Fixer(breakpoint_versions.SITE, DETECTOR, breakpoint_versions.locate),
    Fixer(escalations.SITE, DETECTOR, escalations.locate),
    Fixer(function_change_points.SITE, TASKS, function_change_points.locate),
    Fixer(cleanup_task.SITE, TASKS, cleanup_task.locate),
    Fixer(schedule.SITE, SERVER, schedule.locate),
    Fixer(option.SITE, DEFAULTS, option.locate),
    NewFile(
        "tests",
        "tests/sentry/statistical_detectors/test_orphans.py",
        _template("test_orphans.py.in"),
    ),
    NewFile(
        "tests",
        "tests/sentry/tasks/test_statistical_detectors_orphans.py",
        _template("test_statistical_detectors_orphans.py.in"),
    ),
]
