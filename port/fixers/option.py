"""The cleanup's option, registered after ``statistical_detectors.enable`` with its flags; off."""

from __future__ import annotations

import libcst as cst

from port.base import AnchorMissing, Located, Locator
from port.cst_tools import call_name, rewrite, string_value

SITE = "option"
NEIGHBOUR = "statistical_detectors.enable"
OPTION = "statistical_detectors.orphan_cleanup.enable"
COMMENT = (
    "# Daily deactivation of RegressionGroups whose issue is gone (statistical_detectors.orphans)."
)


def locate(locator: Locator) -> Located:
    registered = _registrations(locator.module)
    if OPTION in registered:
        return Located(
            found=[(registered[OPTION][0], f"register({OPTION!r}): already ported")], done=SITE
        )
    if NEIGHBOUR not in registered:
        raise AnchorMissing(f'register("{NEIGHBOUR}", ...) at the top level of the option defaults')
    statement, call = registered[NEIGHBOUR]
    if not any(arg.keyword is not None and arg.keyword.value == "default" for arg in call.args):
        raise AnchorMissing(f'register("{NEIGHBOUR}", default=...)')
    args = [
        arg.with_changes(value=cst.SimpleString(f'"{OPTION}"'))
        if index == 0
        else arg.with_changes(value=cst.Name("False"))
        if arg.keyword is not None and arg.keyword.value == "default"
        else arg
        for index, arg in enumerate(call.args)
    ]
    expression = statement.body[0]
    assert isinstance(expression, cst.Expr)
    new = statement.with_changes(
        body=[expression.with_changes(value=call.with_changes(args=args))],
        leading_lines=[cst.EmptyLine(comment=cst.Comment(COMMENT))],
    )

    def apply(module: cst.Module) -> cst.Module:
        return rewrite(module, {id(statement): lambda node: cst.FlattenSentinel([node, new])})

    return Located(found=[(statement, f"register({NEIGHBOUR!r}, ...)")], rewrite=apply)


def _registrations(module: cst.Module) -> dict[str, tuple[cst.SimpleStatementLine, cst.Call]]:
    found = {}
    for statement in module.body:
        if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
            continue
        expression = statement.body[0]
        if (
            isinstance(expression, cst.Expr)
            and isinstance(expression.value, cst.Call)
            and call_name(expression.value) == "register"
            and expression.value.args
        ):
            name = string_value(expression.value.args[0].value)
            if name is not None:
                found[name] = (statement, expression.value)
    return found
