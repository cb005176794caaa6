"""Site 2, ``_filter_escalating_groups`` in ``redirect_escalations``: an orphan's trend goes on.

Upstream reports the orphan and drops its bundle, so the orphan stays active and blocks its
function. Here ``_filter_escalating_groups`` hands the orphan's bundle to the caller (a new
``orphaned`` list); ``redirect_escalations`` deactivates them once its loop is done and yields
each one deactivated, as it yields any trend without an active version: on to change-point
detection, where ``get_regression_versions`` meets an inactive version and gives the next one.
"""

from __future__ import annotations

import libcst as cst

from port.base import AnchorMissing, Located, Locator
from port.cst_tools import (
    add_import,
    append_parameter,
    body_of,
    call_name,
    class_def,
    find_all,
    method,
    parse_statements,
    rewrite,
    surround,
    with_blank_line,
)
from port.fixers.common import (
    DEACTIVATE,
    MESSAGE_CALL,
    ORPHANS_MODULE,
    enclosing_for,
    missing_group_branch,
    uses_name,
)

SITE = "site 2"
FILTER = "RegressionDetector._filter_escalating_groups"
REDIRECT = "RegressionDetector.redirect_escalations"


def locate(locator: Locator) -> Located:
    module = locator.module
    filtering = method(module, "RegressionDetector", "_filter_escalating_groups")
    redirect = method(module, "RegressionDetector", "redirect_escalations")
    if uses_name(redirect, DEACTIVATE):
        return Located(found=[(redirect, f"{REDIRECT}: already ported ({DEACTIVATE})")], done=SITE)
    class_def(module, "TrendBundle")
    branch, message = missing_group_branch(filtering, FILTER)
    loop = enclosing_for(filtering, branch)
    bundle = _yielded_name(loop)
    parameters = filtering.params
    if parameters.star_arg is not cst.MaybeSentinel.DEFAULT or parameters.star_kwarg is not None:
        raise AnchorMissing(f"{FILTER}() with plain parameters only")
    filtered = _filter_loop(redirect)
    call = filtered.iter
    assert isinstance(call, cst.Call)

    record = parse_statements(f"if orphaned is not None:\n    orphaned.append({bundle})\n")
    collect = parse_statements("orphaned_bundles: list[TrendBundle] = []\n")
    handle = with_blank_line(
        parse_statements(
            "# An orphan past the grace period is deactivated; its trend goes on as one\n"
            "# without an active version would, to change-point detection.\n"
            f"deactivated_orphans = {DEACTIVATE}(\n"
            "    [\n"
            "        orphaned_bundle.regression_group\n"
            "        for orphaned_bundle in orphaned_bundles\n"
            "        if orphaned_bundle.regression_group is not None\n"
            "    ],\n"
            "    source=cls.source,\n"
            "    kind=cls.kind,\n"
            '    path="escalation",\n'
            ")\n"
            "for orphaned_bundle in orphaned_bundles:\n"
            "    group = orphaned_bundle.regression_group\n"
            "    if group is not None and group.id in deactivated_orphans:\n"
            "        yield orphaned_bundle\n"
        )
    )
    new_parameter = cst.Param(
        name=cst.Name("orphaned"),
        annotation=cst.Annotation(cst.parse_expression("list[TrendBundle] | None")),
        default=cst.Name("None"),
    )
    last_statement = body_of(redirect)[-1]

    def apply(module: cst.Module) -> cst.Module:
        edited = rewrite(
            module,
            {
                id(filtering): lambda node: append_parameter(node, new_parameter),
                id(message): lambda node: cst.FlattenSentinel(record),
                id(call): lambda node: _with_keyword(node, "orphaned", "orphaned_bundles"),
                id(filtered): surround(collect, []),
                id(last_statement): lambda node: cst.FlattenSentinel([node, *handle]),
            },
        )
        return add_import(edited, ORPHANS_MODULE, DEACTIVATE)

    return Located(
        found=[
            (filtering, f"{FILTER}()"),
            (message, f"{MESSAGE_CALL} in its loop over the bundles"),
            (filtered, f"{REDIRECT}: the loop over cls._filter_escalating_groups(...)"),
        ],
        rewrite=apply,
    )


def _yielded_name(loop: cst.For) -> str:
    """The bundle the loop yields (``yield bundle``): what an orphan's branch hands on."""
    for found in find_all(loop, cst.Yield):
        if isinstance(found.value, cst.Name):
            return found.value.value
    raise AnchorMissing(f"a yield of the bundle in {FILTER}'s loop")


def _filter_loop(redirect: cst.FunctionDef) -> cst.For:
    for statement in body_of(redirect):
        if (
            isinstance(statement, cst.For)
            and isinstance(statement.iter, cst.Call)
            and call_name(statement.iter) == "cls._filter_escalating_groups"
        ):
            return statement
    raise AnchorMissing(f"a loop over cls._filter_escalating_groups(...) in {REDIRECT}")


def _with_keyword(node: cst.CSTNode, keyword: str, value: str) -> cst.CSTNode:
    """The call with ``keyword=value`` added, one argument a line (as black lays out a call
    that no longer fits its line)."""
    assert isinstance(node, cst.Call)
    module = cst.Module(body=[])
    arguments = [
        module.code_for_node(arg.with_changes(comma=cst.MaybeSentinel.DEFAULT)) for arg in node.args
    ]
    arguments.append(f"{keyword}={value}")
    lines = "".join(f"    {argument},\n" for argument in arguments)
    return cst.parse_expression(f"{module.code_for_node(node.func)}(\n{lines})")
