"""Anchors two fixers share: the message call the detector's sites replace, the orphans module."""

from __future__ import annotations

import libcst as cst

from port.base import AnchorMissing
from port.cst_tools import body_of, call_name, find_all, string_value, walk

DETECTOR = "src/sentry/statistical_detectors/detector.py"
TASKS = "src/sentry/tasks/statistical_detectors.py"
SERVER = "src/sentry/conf/server.py"
DEFAULTS = "src/sentry/options/defaults.py"
ORPHANS = "src/sentry/statistical_detectors/orphans.py"
ORPHANS_MODULE = "sentry.statistical_detectors.orphans"
DEACTIVATE = "deactivate_orphaned_regression_groups"
PENDING_TYPE = "PendingVersionEnds"
END_PENDING = "end_pending_versions"

MISSING_GROUP_MESSAGE = "Missing issue group for regression issue"
MESSAGE_CALL = f'capture_message("{MISSING_GROUP_MESSAGE}") followed by continue'


def is_message_call(statement: cst.BaseStatement) -> bool:
    """``sentry_sdk.capture_message("Missing issue group for regression issue")`` alone."""
    if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
        return False
    expression = statement.body[0]
    if not isinstance(expression, cst.Expr) or not isinstance(expression.value, cst.Call):
        return False
    call = expression.value
    return (
        call_name(call).split(".")[-1] == "capture_message"
        and len(call.args) == 1
        and string_value(call.args[0].value) == MISSING_GROUP_MESSAGE
    )


def is_continue(statement: cst.BaseStatement) -> bool:
    return (
        isinstance(statement, cst.SimpleStatementLine)
        and len(statement.body) == 1
        and isinstance(statement.body[0], cst.Continue)
    )


def missing_group_branch(function: cst.FunctionDef, where: str) -> tuple[cst.If, cst.BaseStatement]:
    """The one ``if <group> is None:`` whose body is the message call and ``continue``."""
    branches = []
    for branch in find_all(function, cst.If):
        if not isinstance(branch.body, cst.IndentedBlock) or branch.orelse is not None:
            continue
        statements = list(branch.body.body)
        if len(statements) == 2 and is_message_call(statements[0]) and is_continue(statements[1]):
            branches.append((branch, statements[0]))
    if len(branches) != 1:
        found = "none" if not branches else f"{len(branches)}"
        raise AnchorMissing(f"one {MESSAGE_CALL} in {where} (found {found})")
    return branches[0]


def enclosing_for(function: cst.FunctionDef, statement: cst.CSTNode) -> cst.For:
    """The ``for`` loop that has ``statement`` directly in its body."""
    for loop in find_all(function, cst.For):
        if isinstance(loop.body, cst.IndentedBlock) and any(s is statement for s in loop.body.body):
            return loop
    raise AnchorMissing("the loop around the missing-group branch")


def target_names(loop: cst.For) -> list[str]:
    """The names a ``for a, b, c in ...`` binds, in order; [] for any other target."""
    target = loop.target
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, cst.Tuple) and all(
        isinstance(e.value, cst.Name) for e in target.elements
    ):
        return [e.value.value for e in target.elements]  # type: ignore[attr-defined]
    return []


def free_names(node: cst.CSTNode) -> set[str]:
    """Names read in ``node``, attribute names excluded (``a.b`` reads ``a``)."""
    attrs = {id(a.attr) for a in find_all(node, cst.Attribute)}
    return {n.value for n in walk(node) if isinstance(n, cst.Name) and id(n) not in attrs}


def uses_name(node: cst.CSTNode, name: str) -> bool:
    return any(isinstance(n, cst.Name) and n.value == name for n in walk(node))


def direct_statements(node: cst.FunctionDef | cst.For) -> list[cst.BaseStatement]:
    return body_of(node)
