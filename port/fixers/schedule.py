"""The cleanup's schedule: daily, next to ``statistical-detectors-detect-regressions``.

The entry is the neighbour's with the task's name and a daily crontab (04:30 UTC, away from the
hourly detection at minute 0); the neighbour's task prefix (its namespace) is kept.
"""

from __future__ import annotations

import libcst as cst

from port.base import AnchorMissing, Located, Locator
from port.cst_tools import call_name, rewrite, string_value

SITE = "schedule"
SCHEDULES = "TASKWORKER_REGION_SCHEDULES"
NEIGHBOUR = "statistical-detectors-detect-regressions"
KEY = "statistical-detectors-cleanup-orphaned-regression-groups"
NEIGHBOUR_TASK = "sentry.tasks.statistical_detectors.run_detection"
TASK = "sentry.tasks.statistical_detectors.cleanup_orphaned_regression_groups"
DAILY = ("30", "4", "*", "*", "*")


def locate(locator: Locator) -> Located:
    schedules = _schedules(locator.module)
    keys = {string_value(e.key): e for e in schedules.elements if isinstance(e, cst.DictElement)}
    if KEY in keys:
        return Located(found=[(keys[KEY], f"{SCHEDULES}[{KEY!r}]: already ported")], done=SITE)
    neighbour = keys.get(NEIGHBOUR)
    if neighbour is None or not isinstance(neighbour.value, cst.Dict):
        raise AnchorMissing(f"{SCHEDULES}[{NEIGHBOUR!r}] = {{...}}")
    entry = {
        string_value(e.key): e for e in neighbour.value.elements if isinstance(e, cst.DictElement)
    }
    task, schedule = entry.get("task"), entry.get("schedule")
    task_name = string_value(task.value) if task is not None else None
    if task is None or task_name is None or not task_name.endswith(NEIGHBOUR_TASK):
        raise AnchorMissing(f'"task": "...{NEIGHBOUR_TASK}" in {SCHEDULES}[{NEIGHBOUR!r}]')
    if (
        schedule is None
        or not isinstance(schedule.value, cst.Call)
        or call_name(schedule.value) != "task_crontab"
        or len(schedule.value.args) != len(DAILY)
    ):
        raise AnchorMissing(
            f'"schedule": task_crontab(minute, hour, ...) in {SCHEDULES}[{NEIGHBOUR!r}]'
        )
    crontab = schedule.value
    new_task = cst.SimpleString(f'"{task_name[: -len(NEIGHBOUR_TASK)]}{TASK}"')
    new_crontab = crontab.with_changes(
        args=[
            arg.with_changes(value=cst.SimpleString(f'"{value}"'))
            for arg, value in zip(crontab.args, DAILY, strict=True)
        ]
    )
    replaced = {"task": new_task, "schedule": new_crontab}
    value = neighbour.value.with_changes(
        elements=[
            element.with_changes(value=replaced[key])
            if isinstance(element, cst.DictElement)
            and (key := string_value(element.key)) in replaced
            else element
            for element in neighbour.value.elements
        ]
    )
    new_entry = neighbour.with_changes(key=cst.SimpleString(f'"{KEY}"'), value=value)
    elements = list(schedules.elements)
    index = elements.index(neighbour)
    middle = (
        elements[0].comma if index == len(elements) - 1 and len(elements) > 1 else neighbour.comma
    )

    def apply(module: cst.Module) -> cst.Module:
        return rewrite(
            module,
            {
                id(neighbour): lambda node: cst.FlattenSentinel(
                    [node.with_changes(comma=middle), new_entry]
                )
            },
        )

    return Located(found=[(neighbour, f"{SCHEDULES}[{NEIGHBOUR!r}] -> {task_name}")], rewrite=apply)


def _schedules(module: cst.Module) -> cst.Dict:
    for statement in module.body:
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        for small in statement.body:
            if isinstance(small, cst.Assign):
                targets = [t.target for t in small.targets]
            elif isinstance(small, cst.AnnAssign):
                targets = [small.target]
            else:
                continue
            named = any(isinstance(t, cst.Name) and t.value == SCHEDULES for t in targets)
            if named and isinstance(small.value, cst.Dict):
                return small.value
    raise AnchorMissing(f"{SCHEDULES} = {{...}} at the top level of the settings")
