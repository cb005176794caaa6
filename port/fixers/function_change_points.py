"""Site 3, ``_detect_function_change_points``: a version is saved only with its occurrence.

Upstream saves the versions (``save_regressions_with_versions``) and then emits their
occurrences (``emit_function_regression_issue``), which skips a regression without an example
profile and sends none when the profiling service answers non-200: those versions are orphans
from birth. Here each chunk's versions are decided first, without creating any
(``_regressions_due_versions``: ``get_regression_versions`` and the detector's buffer period), the
occurrences of the due ones are emitted, and only the regressions whose occurrence was sent are
saved. "Sent" is what the emitter built a payload for, once the service answered 200; the answer's
body (a count) is not read for it. ``emit_function_regression_issue`` keeps its return value.
"""

from __future__ import annotations

import re

import libcst as cst

from port.base import AnchorMissing, Located, Locator
from port.cst_tools import (
    add_import,
    append_parameter,
    body_of,
    call_name,
    find_all,
    imported_names,
    parse_statements,
    replace_with,
    rewrite,
    top_level_function,
    with_blank_line,
)
from port.fixers.common import END_PENDING, ORPHANS_MODULE, PENDING_TYPE, target_names

SITE = "site 3"
FLOW = "_detect_function_change_points"
EMIT = "emit_function_regression_issue"
DECIDE = "_decide_regression_versions"


def locate(locator: Locator) -> Located:
    module = locator.module
    flow = top_level_function(module, FLOW)
    if any(isinstance(s, cst.FunctionDef) and s.name.value == DECIDE for s in module.body):
        return Located(found=[(flow, f"{FLOW}(): already ported ({DECIDE})")], done=SITE)
    statements = body_of(flow)
    save, detector, regressions = _save_statement(statements)
    loop = _emit_loop(statements, regressions)
    if statements.index(save) > statements.index(loop):
        raise AnchorMissing(f"save_regressions_with_versions before the {EMIT} loop in {FLOW}")
    chunk = target_names(loop)[0]
    detected, emitted, emit_call = _loop_counters(locator, loop, chunk)
    projects, start = (locator.code(arg.value) for arg in (emit_call.args[0], emit_call.args[2]))
    emitter = top_level_function(module, EMIT)
    emit_parts = _emitter_parts(locator, emitter)
    imports = imported_names(module)
    utc = _utc(imports)
    if imports.get("datetime") != "datetime.datetime":
        raise AnchorMissing("from datetime import datetime in the tasks module")
    for name in ("RegressionDetector", "BreakpointData", "metrics"):
        if name not in imports:
            raise AnchorMissing(f"an import of {name} in the tasks module")

    new_loop = parse_statements(
        "not_emitted_count = 0\n"
        f"for {chunk} in {locator.code(loop.iter)}:\n"
        "    # Decided without writing, emitted, and only then written, for the regressions sent:\n"
        "    # a version saved without its occurrence would be an orphan from birth.\n"
        + _call_line(4, "due, held, pending = ", DECIDE, f"{detector}, {chunk}")
        + "    sent: list[BreakpointData] = []\n"
        "    if due:\n"
        + _call_line(8, f"{emitted} += ", EMIT, f"{projects}, due, {start}, sent=sent")
        + "        not_emitted_count += len(due) - len(sent)\n"
        "    # A version is ended (a resolved issue's closed, an orphan deactivated) only now:\n"
        "    # for a regression sent, or one the buffer holds back a new version for. One not\n"
        "    # sent keeps its version as it was, and the next run decides it again.\n"
        f"    {END_PENDING}(\n"
        "        pending,\n"
        "        [*sent, *held],\n"
        f"        source={detector}.source,\n"
        f"        kind={detector}.kind,\n"
        "    )\n"
        f"    for _ in {detector}.save_regressions_with_versions(\n"
        "        regression for regression in sent\n"
        "    ):\n"
        f"        {detected} += 1\n"
    )
    new_loop[0] = new_loop[0].with_changes(leading_lines=loop.leading_lines)
    not_emitted_metric = with_blank_line(
        parse_statements(
            "metrics.incr(\n"
            '    "statistical_detectors.breakpoint.not_emitted",\n'
            "    amount=not_emitted_count,\n"
            "    tags={\n"
            f'        "source": {detector}.source,\n'
            f'        "kind": {detector}.kind,\n'
            "    },\n"
            "    sample_rate=1.0,\n"
            ")\n"
        )
    )
    due_function = parse_statements(
        f"def {DECIDE}(\n"
        "    detector: type[RegressionDetector], regressions: list[BreakpointData]\n"
        f") -> tuple[list[BreakpointData], list[BreakpointData], {PENDING_TYPE}]:\n"
        '    """What save_regressions_with_versions would do with these; nothing written.\n'
        "\n"
        "    The regressions due a new version; those the buffer holds back (the save's own\n"
        "    check), whose previous version is still ended; and the version ends, pending.\n"
        '    """\n'
        f"    pending = {PENDING_TYPE}()\n"
        "    due: list[BreakpointData] = []\n"
        "    held: list[BreakpointData] = []\n"
        "    for _, prev_date_regressed, regression in detector.get_regression_versions(\n"
        "        (regression for regression in regressions), pending=pending\n"
        "    ):\n"
        f'        date_regressed = datetime.fromtimestamp(regression["breakpoint"], {utc})\n'
        "        if (\n"
        "            prev_date_regressed is None\n"
        "            or prev_date_regressed + detector.buffer_period <= date_regressed\n"
        "        ):\n"
        "            due.append(regression)\n"
        "        else:\n"
        "            held.append(regression)\n"
        "    return due, held, pending\n"
    )
    due_function[0] = due_function[0].with_changes(
        leading_lines=[cst.EmptyLine(indent=False), cst.EmptyLine(indent=False)]
    )
    last_statement = statements[-1]
    sent_parameter = cst.Param(
        name=cst.Name("sent"),
        annotation=cst.Annotation(cst.parse_expression("list[BreakpointData] | None")),
        default=cst.Name("None"),
    )
    payloads_init, append, loop_variable, status_check = emit_parts
    built_init = parse_statements("built: list[BreakpointData] = []\n")
    built_append = parse_statements(f"built.append({loop_variable})\n")
    record_sent = with_blank_line(
        parse_statements(
            "# Sent: every payload built, once the service took them (its body is a count).\n"
            "if sent is not None:\n"
            "    sent.extend(built)\n"
        )
    )

    def apply(module: cst.Module) -> cst.Module:
        edited = rewrite(
            module,
            {
                id(save): replace_with(cst.RemovalSentinel.REMOVE),
                id(loop): replace_with(cst.FlattenSentinel(new_loop)),
                id(last_statement): lambda node: cst.FlattenSentinel([node, *not_emitted_metric]),
                id(emitter): lambda node: cst.FlattenSentinel(
                    [*due_function, append_parameter(node, sent_parameter)]
                ),
                id(payloads_init): lambda node: cst.FlattenSentinel([node, *built_init]),
                id(append): lambda node: cst.FlattenSentinel([node, *built_append]),
                id(status_check): lambda node: cst.FlattenSentinel([node, *record_sent]),
            },
        )
        return add_import(edited, ORPHANS_MODULE, PENDING_TYPE, END_PENDING)

    return Located(
        found=[
            (save, f"{FLOW}: {locator.code(save.body[0])} (save, then emit)"),
            (loop, f"{FLOW}: the loop over {locator.code(loop.iter)} calling {EMIT}()"),
            (emitter, f"{EMIT}()"),
            (append, f"{EMIT}: payloads.append(...) per {loop_variable}"),
            (status_check, f"{EMIT}: {locator.code(status_check.test)}"),
        ],
        rewrite=apply,
    )


def _save_statement(
    statements: list[cst.BaseStatement],
) -> tuple[cst.SimpleStatementLine, str, str]:
    """``regressions = <Detector>.save_regressions_with_versions(regressions)``."""
    for statement in statements:
        if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
            continue
        assign = statement.body[0]
        if not isinstance(assign, cst.Assign) or not isinstance(assign.value, cst.Call):
            continue
        call = assign.value
        name = call_name(call)
        if not name.endswith(".save_regressions_with_versions") or len(call.args) != 1:
            continue
        targets = assign.targets
        argument = call.args[0].value
        if (
            len(targets) == 1
            and isinstance(targets[0].target, cst.Name)
            and isinstance(argument, cst.Name)
            and targets[0].target.value == argument.value
        ):
            return statement, name.rsplit(".", 1)[0], argument.value
    raise AnchorMissing(
        f"regressions = <Detector>.save_regressions_with_versions(regressions) in {FLOW}"
    )


def _emit_loop(statements: list[cst.BaseStatement], regressions: str) -> cst.For:
    for statement in statements:
        if (
            isinstance(statement, cst.For)
            and isinstance(statement.iter, cst.Call)
            and call_name(statement.iter) == "chunked"
            and statement.iter.args
            and isinstance(statement.iter.args[0].value, cst.Name)
            and statement.iter.args[0].value.value == regressions
            and len(target_names(statement)) == 1
            and any(call_name(c) == EMIT for c in find_all(statement, cst.Call))
        ):
            return statement
    raise AnchorMissing(f"a loop over chunked({regressions}, ...) calling {EMIT}() in {FLOW}")


def _loop_counters(locator: Locator, loop: cst.For, chunk: str) -> tuple[str, str, cst.Call]:
    """The loop's two statements: ``<detected> += len(chunk)``, ``<emitted> += emit(...)``."""
    detected = emitted = None
    emit_call = None
    statements = body_of(loop)
    for statement in statements:
        small = statement.body[0] if isinstance(statement, cst.SimpleStatementLine) else None
        if not isinstance(small, cst.AugAssign) or not isinstance(small.target, cst.Name):
            break
        value = small.value
        if isinstance(value, cst.Call) and locator.code(value) == f"len({chunk})":
            detected = small.target.value
        elif isinstance(value, cst.Call) and call_name(value) == EMIT and len(value.args) == 3:
            emitted = small.target.value
            emit_call = value
    if len(statements) != 2 or detected is None or emitted is None or emit_call is None:
        raise AnchorMissing(
            f"the {EMIT} loop holding only <count> += len({chunk}) and"
            f" <count> += {EMIT}(projects, {chunk}, start)"
        )
    return detected, emitted, emit_call


def _emitter_parts(
    locator: Locator, emitter: cst.FunctionDef
) -> tuple[cst.BaseStatement, cst.BaseStatement, str, cst.If]:
    """``payloads = []``, ``payloads.append(...)`` in a loop, and the non-200 return."""
    parameters = emitter.params
    if parameters.star_arg is not cst.MaybeSentinel.DEFAULT or parameters.star_kwarg is not None:
        raise AnchorMissing(f"{EMIT}() with plain parameters only")
    statements = body_of(emitter)
    init = next((s for s in statements if locator.code(s).strip() == "payloads = []"), None)
    if init is None:
        raise AnchorMissing(f"payloads = [] in {EMIT}")
    for loop in find_all(emitter, cst.For):
        names = target_names(loop)
        for statement in body_of(loop):
            if (
                len(names) == 1
                and isinstance(statement, cst.SimpleStatementLine)
                and any(call_name(c) == "payloads.append" for c in find_all(statement, cst.Call))
            ):
                append, variable = statement, names[0]
                break
        else:
            continue
        break
    else:
        raise AnchorMissing(f"payloads.append(...) in a loop over the regressions in {EMIT}")
    for statement in statements:
        if isinstance(statement, cst.If) and re.fullmatch(
            r"\w+\.status != 200", locator.code(statement.test).strip()
        ):
            return init, append, variable, statement
    raise AnchorMissing(f"if <response>.status != 200: ... in {EMIT}")


def _call_line(indent: int, prefix: str, function: str, arguments: str) -> str:
    """``prefix function(arguments)`` as one line, or with the arguments on a line of their own
    when that passes 100 characters once in the flow's loop (4 more spaces)."""
    pad = " " * indent
    line = f"{pad}{prefix}{function}({arguments})\n"
    if len(line) - 1 + 4 <= 100:
        return line
    return f"{pad}{prefix}{function}(\n{pad}    {arguments}\n{pad})\n"


def _utc(imports: dict[str, str]) -> str:
    if imports.get("UTC") == "datetime.UTC":
        return "UTC"
    for name, source in imports.items():
        if source == "datetime.timezone":
            return f"{name}.utc"
    raise AnchorMissing("from datetime import UTC (or timezone) in the tasks module")
