"""Site 1, ``RegressionDetector.get_regression_versions``: an orphan gets its next version.

Upstream reports the orphan (no issue group for an active version) to Sentry and skips it, on
every run, for good. Here the orphans of each batch are collected where the message was sent and
handed to ``deactivate_orphaned_regression_groups``; each one it deactivated (older than the grace
period, still an orphan once its row is locked) yields what the resolved-issue branch yields, so
``save_regressions_with_versions`` creates the next version as for a resolved issue.
"""

from __future__ import annotations

import libcst as cst

from port.base import AnchorMissing, Located, Locator
from port.cst_tools import (
    add_import,
    dotted,
    find_all,
    imported_names,
    method,
    parse_statements,
    replace_with,
    rewrite,
    surround,
    with_blank_line,
)
from port.fixers.common import (
    DEACTIVATE,
    MESSAGE_CALL,
    ORPHANS_MODULE,
    enclosing_for,
    free_names,
    missing_group_branch,
    target_names,
    uses_name,
)

SITE = "site 1"
WHERE = "RegressionDetector.get_regression_versions"


def locate(locator: Locator) -> Located:
    module = locator.module
    function = method(module, "RegressionDetector", "get_regression_versions")
    if uses_name(function, DEACTIVATE):
        return Located(found=[(function, f"{WHERE}: already ported ({DEACTIVATE})")], done=SITE)
    branch, message = missing_group_branch(function, WHERE)
    loop = enclosing_for(function, branch)
    names = target_names(loop)
    if len(names) != 3:
        raise AnchorMissing(
            f"the loop around the message binding (key, group, regression) in {WHERE}"
        )
    _, group_name, regression_name = names
    resolved_yield = _resolved_yield(loop)
    if not free_names(resolved_yield) <= {group_name, regression_name}:
        raise AnchorMissing(
            f"a resolved-issue yield of only {group_name} and {regression_name} in {WHERE}"
        )
    imports = imported_names(module)
    for name in ("RegressionGroup", "BreakpointData"):
        if name not in imports:
            raise AnchorMissing(f"an import of {name} in the detector module")
    batch = enclosing_for(function, loop)
    pair = f"({group_name}, {regression_name})"
    yielded = locator.code(resolved_yield)
    collect = parse_statements(
        "orphaned_groups: list[tuple[RegressionGroup, BreakpointData]] = []\n"
    )
    record = parse_statements(f"orphaned_groups.append({pair})\n")
    handle = with_blank_line(
        parse_statements(
            "# An orphan older than the grace period is deactivated and versioned as a resolved\n"
            "# issue is; a younger one may still get its issue and is left as it is.\n"
            f"deactivated_orphans = {DEACTIVATE}(\n"
            f"    [{group_name} for {group_name}, _ in orphaned_groups],\n"
            "    source=cls.source,\n"
            "    kind=cls.kind,\n"
            '    path="breakpoint",\n'
            ")\n"
            f"for {group_name}, {regression_name} in orphaned_groups:\n"
            f"    if {group_name}.id in deactivated_orphans:\n"
            f"        yield {yielded}\n"
        )
    )

    def apply(module: cst.Module) -> cst.Module:
        edited = rewrite(
            module,
            {
                id(message): replace_with(record[0]),
                id(loop): surround(collect, handle),
            },
        )
        return add_import(edited, ORPHANS_MODULE, DEACTIVATE)

    return Located(
        found=[
            (function, f"{WHERE}()"),
            (message, f"{MESSAGE_CALL} in the active-regressions loop"),
            (resolved_yield, f"the resolved-issue yield: {yielded}"),
            (batch, "the batch loop around it (orphans are deactivated per batch)"),
        ],
        rewrite=apply,
    )


def _resolved_yield(loop: cst.For) -> cst.BaseExpression:
    """What the ``if <issue>.status == GroupStatus.RESOLVED:`` branch of the loop yields."""
    for branch in find_all(loop, cst.If):
        resolved = any(
            dotted(a) == "GroupStatus.RESOLVED" for a in find_all(branch.test, cst.Attribute)
        )
        if not resolved:
            continue
        yields = find_all(branch.body, cst.Yield)
        if len(yields) == 1 and yields[0].value is not None:
            value = yields[0].value
            if isinstance(value, cst.BaseExpression):
                return value
    raise AnchorMissing(f"the GroupStatus.RESOLVED branch's one yield in {WHERE}")
