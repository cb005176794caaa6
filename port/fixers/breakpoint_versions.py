"""Site 1, ``RegressionDetector.get_regression_versions``: an orphan gets its next version.

Upstream reports the orphan (no issue group for an active version) to Sentry and skips it, on
every run, for good. Here the orphans of each batch are collected where the message was sent and
handed to ``deactivate_orphaned_regression_groups``; each one it deactivated (older than the grace
period, still an orphan once its row is locked) yields what the resolved-issue branch yields, so
``save_regressions_with_versions`` creates the next version as for a resolved issue.

A new ``pending`` argument (a ``PendingVersionEnds``) makes the call decide without writing: the
resolved versions it would close and the orphans it would deactivate are recorded there, and an
orphan past the grace period yields as a deactivated one would. The function flow (site 3) writes
them after its emission, for the regressions sent only.
"""

from __future__ import annotations

import libcst as cst

from port.base import AnchorMissing, Located, Locator
from port.cst_tools import (
    add_import,
    append_parameter,
    body_of,
    call_name,
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
    PENDING_TYPE,
    enclosing_for,
    free_names,
    missing_group_branch,
    target_names,
    uses_name,
)

SITE = "site 1"
WHERE = "RegressionDetector.get_regression_versions"
# Given, the call decides without writing: its ends are recorded for the caller to write.
PENDING = "pending"


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
    yield_statement, resolved_yield = _resolved_yield(loop)
    if not free_names(resolved_yield) <= {group_name, regression_name}:
        raise AnchorMissing(
            f"a resolved-issue yield of only {group_name} and {regression_name} in {WHERE}"
        )
    imports = imported_names(module)
    for name in ("RegressionGroup", "BreakpointData"):
        if name not in imports:
            raise AnchorMissing(f"an import of {name} in the detector module")
    batch = enclosing_for(function, loop)
    close = _bulk_close(locator, batch)
    pair = f"({group_name}, {regression_name})"
    yielded = locator.code(resolved_yield)
    collect = parse_statements(
        "orphaned_groups: list[tuple[RegressionGroup, BreakpointData]] = []\n"
    )
    record = parse_statements(f"orphaned_groups.append({pair})\n")
    record_resolved = parse_statements(
        f"if {PENDING} is not None:\n    {PENDING}.resolved.append({pair})\n"
    )
    handle = with_blank_line(
        parse_statements(
            "# An orphan older than the grace period is deactivated and versioned as a resolved\n"
            "# issue is; a younger one may still get its issue and is left as it is.\n"
            f"if {PENDING} is None:\n"
            f"    ended_orphans = {DEACTIVATE}(\n"
            f"        [{group_name} for {group_name}, _ in orphaned_groups],\n"
            "        source=cls.source,\n"
            "        kind=cls.kind,\n"
            '        path="breakpoint",\n'
            "    )\n"
            "else:\n"
            "    # Decided, not written: the caller ends these versions (end_pending_versions).\n"
            f"    ended_orphans = {PENDING}.add_orphans(orphaned_groups)\n"
            f"for {group_name}, {regression_name} in orphaned_groups:\n"
            f"    if {group_name}.id in ended_orphans:\n"
            f"        yield {yielded}\n"
        )
    )
    pending_parameter = cst.Param(
        name=cst.Name(PENDING),
        annotation=cst.Annotation(cst.parse_expression(f"{PENDING_TYPE} | None")),
        default=cst.Name("None"),
    )

    def only_without_pending(node: cst.CSTNode) -> cst.CSTNode:
        assert isinstance(node, cst.SimpleStatementLine)
        guarded = cst.parse_statement(f"if {PENDING} is None:\n    pass\n")
        assert isinstance(guarded, cst.If)
        assert isinstance(guarded.body, cst.IndentedBlock)
        return guarded.with_changes(
            leading_lines=node.leading_lines,
            body=guarded.body.with_changes(body=[node.with_changes(leading_lines=())]),
        )

    def apply(module: cst.Module) -> cst.Module:
        edited = rewrite(
            module,
            {
                id(function): lambda node: append_parameter(node, pending_parameter),
                id(message): replace_with(record[0]),
                id(yield_statement): lambda node: cst.FlattenSentinel([*record_resolved, node]),
                id(loop): surround(collect, handle),
                id(close): only_without_pending,
            },
        )
        return add_import(edited, ORPHANS_MODULE, DEACTIVATE, PENDING_TYPE)

    return Located(
        found=[
            (function, f"{WHERE}()"),
            (message, f"{MESSAGE_CALL} in the active-regressions loop"),
            (resolved_yield, f"the resolved-issue yield: {yielded}"),
            (batch, "the batch loop around it (orphans are deactivated per batch)"),
            (close, f"the batch's close: {locator.code(close.body[0])}"),
        ],
        rewrite=apply,
    )


def _resolved_yield(loop: cst.For) -> tuple[cst.SimpleStatementLine, cst.BaseExpression]:
    """The ``if <issue>.status == GroupStatus.RESOLVED:`` branch's yield statement, and what
    it yields."""
    for branch in find_all(loop, cst.If):
        resolved = any(
            dotted(a) == "GroupStatus.RESOLVED" for a in find_all(branch.test, cst.Attribute)
        )
        if not resolved or not isinstance(branch.body, cst.IndentedBlock):
            continue
        yields = find_all(branch.body, cst.Yield)
        statements = [
            s
            for s in branch.body.body
            if isinstance(s, cst.SimpleStatementLine)
            and len(s.body) == 1
            and isinstance(s.body[0], cst.Expr)
            and isinstance(s.body[0].value, cst.Yield)
        ]
        if len(yields) == 1 and len(statements) == 1 and yields[0].value is not None:
            value = yields[0].value
            if isinstance(value, cst.BaseExpression):
                return statements[0], value
    raise AnchorMissing(f"the GroupStatus.RESOLVED branch's one yield statement in {WHERE}")


def _bulk_close(locator: Locator, batch: cst.For) -> cst.SimpleStatementLine:
    """``RegressionGroup.objects.bulk_update(<closing>, ["active"])`` in the batch loop's body."""
    for statement in body_of(batch):
        if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
            continue
        expression = statement.body[0]
        if not isinstance(expression, cst.Expr) or not isinstance(expression.value, cst.Call):
            continue
        call = expression.value
        if (
            call_name(call) == "RegressionGroup.objects.bulk_update"
            and len(call.args) == 2
            and isinstance(call.args[0].value, cst.Name)
            and locator.code(call.args[1].value) in ('["active"]', "['active']")
        ):
            return statement
    raise AnchorMissing(
        f'RegressionGroup.objects.bulk_update(<groups>, ["active"]) in the batch loop of {WHERE}'
    )
