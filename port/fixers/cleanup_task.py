"""The daily task beside ``run_detection``: the batched cleanup, gated by an option (off).

The task takes ``run_detection``'s decorator, with its own name: the same namespace (or queue)
and retry settings as its neighbour. Where the neighbour sets a processing deadline, the
cleanup's is five minutes, above the cleanup's own four-minute runtime cap.
"""

from __future__ import annotations

import libcst as cst

from port.base import AnchorMissing, Located, Locator
from port.cst_tools import (
    add_import,
    call_name,
    imported_names,
    parse_statements,
    rewrite,
    string_value,
    top_level_function,
)
from port.fixers.common import ORPHANS_MODULE

SITE = "daily task"
TASK = "cleanup_orphaned_regression_groups"
TASK_NAME = f"sentry.tasks.statistical_detectors.{TASK}"
NEIGHBOUR_NAME = "sentry.tasks.statistical_detectors.run_detection"
OPTION = "statistical_detectors.orphan_cleanup.enable"
CLEANUP = "run_orphan_cleanup"
DEADLINE_SECONDS = "5 * 60"


def locate(locator: Locator) -> Located:
    module = locator.module
    if any(isinstance(s, cst.FunctionDef) and s.name.value == TASK for s in module.body):
        existing = top_level_function(module, TASK)
        return Located(found=[(existing, f"{TASK}(): already ported")], done=SITE)
    neighbour = top_level_function(module, "run_detection")
    decorator = _task_decorator(neighbour)
    if imported_names(module).get("options") != "sentry.options":
        raise AnchorMissing("from sentry import options in the tasks module")
    arguments = []
    for arg in decorator.args:
        keyword = arg.keyword.value if arg.keyword is not None else None
        if keyword == "name":
            arguments.append(f'    name="{TASK_NAME}",\n')
        elif keyword == "processing_deadline_duration":
            arguments.append(f"    processing_deadline_duration={DEADLINE_SECONDS},\n")
        elif keyword is not None:
            arguments.append(f"    {keyword}={locator.code(arg.value)},\n")
        else:
            raise AnchorMissing(
                "run_detection's @instrumented_task(...) with keyword arguments only"
            )
    task = parse_statements(
        "@instrumented_task(\n" + "".join(arguments) + ")\n"
        f"def {TASK}() -> None:\n"
        '    """Deactivates the RegressionGroups whose issue is gone (see orphans.py)."""\n'
        f'    if not options.get("{OPTION}"):\n'
        "        return\n"
        "\n"
        f"    {CLEANUP}()\n"
    )
    task[0] = task[0].with_changes(
        leading_lines=[cst.EmptyLine(indent=False), cst.EmptyLine(indent=False)]
    )

    def apply(module: cst.Module) -> cst.Module:
        edited = rewrite(module, {id(neighbour): lambda node: cst.FlattenSentinel([node, *task])})
        return add_import(edited, ORPHANS_MODULE, CLEANUP)

    return Located(
        found=[(neighbour, f'run_detection() with @instrumented_task(name="{NEIGHBOUR_NAME}")')],
        rewrite=apply,
    )


def _task_decorator(function: cst.FunctionDef) -> cst.Call:
    for decorator in function.decorators:
        call = decorator.decorator
        if isinstance(call, cst.Call) and call_name(call) == "instrumented_task":
            names = [
                string_value(arg.value)
                for arg in call.args
                if arg.keyword is not None and arg.keyword.value == "name"
            ]
            if names == [NEIGHBOUR_NAME]:
                return call
    raise AnchorMissing(f'@instrumented_task(name="{NEIGHBOUR_NAME}", ...) on run_detection')
