"""Finding nodes by structure and rewriting them by identity, on libcst trees."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

import libcst as cst
import libcst.matchers as m

from port.base import AnchorMissing

NodeT = TypeVar("NodeT", bound=cst.CSTNode)
Replacement = cst.CSTNode | cst.FlattenSentinel[cst.CSTNode] | cst.RemovalSentinel
Edit = Callable[[cst.CSTNode], Replacement]


def walk(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """``node`` and every node under it, parents before children, in source order."""
    yield node
    for child in node.children:
        yield from walk(child)


def find_all(
    node: cst.CSTNode, kind: type[NodeT], matcher: m.BaseMatcherNode | None = None
) -> list[NodeT]:
    return [
        found
        for found in walk(node)
        if isinstance(found, kind) and (matcher is None or m.matches(found, matcher))
    ]


def top_level_function(module: cst.Module, name: str) -> cst.FunctionDef:
    for statement in module.body:
        if isinstance(statement, cst.FunctionDef) and statement.name.value == name:
            return statement
    raise AnchorMissing(f"a top-level function {name}()")


def class_def(module: cst.Module, name: str) -> cst.ClassDef:
    for statement in module.body:
        if isinstance(statement, cst.ClassDef) and statement.name.value == name:
            return statement
    raise AnchorMissing(f"a top-level class {name}")


def method(module: cst.Module, class_name: str, name: str) -> cst.FunctionDef:
    for statement in class_def(module, class_name).body.body:
        if isinstance(statement, cst.FunctionDef) and statement.name.value == name:
            return statement
    raise AnchorMissing(f"a method {class_name}.{name}()")


def body_of(node: cst.FunctionDef | cst.For | cst.If | cst.With) -> list[cst.BaseStatement]:
    body = node.body
    if not isinstance(body, cst.IndentedBlock):
        raise AnchorMissing("an indented block")
    return list(body.body)


def call_name(call: cst.Call) -> str:
    """``a.b.c`` for ``a.b.c(...)``, ``f`` for ``f(...)``, "" otherwise."""
    return dotted(call.func)


def dotted(node: cst.BaseExpression) -> str:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr.value}" if base else ""
    return ""


def string_value(node: cst.CSTNode) -> str | None:
    """The value of a plain string literal (no f-string, no concatenation)."""
    if isinstance(node, cst.SimpleString):
        value = node.evaluated_value
        return value if isinstance(value, str) else None
    return None


def statement_calls(statement: cst.CSTNode, name_suffix: str) -> list[cst.Call]:
    """The calls in ``statement`` whose dotted name is or ends with ``name_suffix``."""
    return [
        call
        for call in find_all(statement, cst.Call)
        if call_name(call) == name_suffix or call_name(call).endswith("." + name_suffix)
    ]


def parse_statements(code: str) -> list[cst.BaseStatement]:
    """Statements from source text (dedented, one level of indentation per block).

    Comments above the first statement stay with it (a parsed module keeps them in its header).
    """
    module = cst.parse_module(code)
    statements: list[cst.BaseStatement] = list(module.body)
    if statements and module.header:
        first = statements[0]
        assert isinstance(first, cst.SimpleStatementLine | cst.BaseCompoundStatement)
        statements[0] = first.with_changes(leading_lines=[*module.header, *first.leading_lines])
    return statements


def imported_names(module: cst.Module) -> dict[str, str]:
    """Top-level ``from X import a as b`` names: {b: "X.a"}."""
    names: dict[str, str] = {}
    for statement in module.body:
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        for small in statement.body:
            if isinstance(small, cst.ImportFrom) and not isinstance(small.names, cst.ImportStar):
                source = dotted(small.module) if small.module is not None else ""
                for alias in small.names:
                    imported = dotted(alias.name)
                    bound = alias.asname.name if alias.asname is not None else alias.name
                    if isinstance(bound, cst.Name):
                        names[bound.value] = f"{source}.{imported}"
            elif isinstance(small, cst.Import):
                for alias in small.names:
                    bound = alias.asname.name if alias.asname is not None else alias.name
                    if isinstance(bound, cst.Name):
                        names[bound.value] = dotted(alias.name)
                    elif isinstance(bound, cst.Attribute):
                        root = dotted(bound).split(".")[0]
                        names[root] = root
    return names


def add_import(module: cst.Module, source: str, *names: str) -> cst.Module:
    """``from source import names``: merged into the module's import from ``source`` if it has
    one, else placed among the top-level ``from`` imports in module order.

    A new statement goes after the last ``from`` import whose module sorts before ``source``
    (isort's order for one section), or after the last import when none does. Names are in
    isort's order (constants, classes, the rest); a line past 100 characters is parenthesized
    with one name a line.
    """
    bound = imported_names(module)
    wanted = [name for name in names if bound.get(name) != f"{source}.{name}"]
    if not wanted:
        return module
    body = list(module.body)
    for index, statement in enumerate(body):
        existing = _plain_import_from(module, statement, source)
        if existing is not None:
            merged = _import_statement(source, [*existing, *wanted])
            merged = merged.with_changes(leading_lines=statement.leading_lines)
            return module.with_changes(body=[*body[:index], merged, *body[index + 1 :]])
    new = _import_statement(source, wanted)
    last_import = None
    insert_after = None
    for index, statement in enumerate(body):
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        for small in statement.body:
            if isinstance(small, cst.Import | cst.ImportFrom):
                last_import = index
            if isinstance(small, cst.ImportFrom) and small.module is not None:
                module_name = dotted(small.module)
                if module_name.split(".")[0] == source.split(".")[0] and module_name < source:
                    insert_after = index
    position = insert_after if insert_after is not None else last_import
    if position is None:
        return module.with_changes(body=[new, *body])
    return module.with_changes(body=[*body[: position + 1], new, *body[position + 1 :]])


def _plain_import_from(
    module: cst.Module, statement: cst.BaseStatement, source: str
) -> list[str] | None:
    """The names of ``from source import ...`` (no alias, no comment), or None."""
    if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
        return None
    small = statement.body[0]
    if (
        not isinstance(small, cst.ImportFrom)
        or small.relative
        or small.module is None
        or dotted(small.module) != source
        or isinstance(small.names, cst.ImportStar)
        or "#" in module.code_for_node(statement)
    ):
        return None
    names = []
    for alias in small.names:
        if alias.asname is not None or not isinstance(alias.name, cst.Name):
            return None
        names.append(alias.name.value)
    return names


def _isort_key(name: str) -> tuple[int, str]:
    if name.isupper():
        return 0, name.lower()
    return (1 if name[:1].isupper() else 2), name.lower()


def _import_statement(source: str, names: list[str]) -> cst.SimpleStatementLine:
    ordered = sorted(set(names), key=_isort_key)
    line = f"from {source} import {', '.join(ordered)}\n"
    if len(line) > 101:
        line = f"from {source} import (\n" + "".join(f"    {n},\n" for n in ordered) + ")\n"
    statement = cst.parse_statement(line)
    assert isinstance(statement, cst.SimpleStatementLine)
    return statement


class _ByIdentity(cst.CSTTransformer):
    def __init__(self, edits: dict[int, Edit]) -> None:
        super().__init__()
        self.edits = edits
        self.applied: set[int] = set()

    def on_leave(  # type: ignore[override]
        self, original_node: cst.CSTNode, updated_node: cst.CSTNode
    ) -> Replacement:
        edit = self.edits.get(id(original_node))
        if edit is None:
            return updated_node
        self.applied.add(id(original_node))
        return edit(updated_node)


def rewrite(module: cst.Module, edits: dict[int, Edit]) -> cst.Module:
    """Apply each edit to the node it is keyed by (``id`` of a node of ``module``)."""
    transformer = _ByIdentity(edits)
    result = module.visit(transformer)
    if transformer.applied != set(edits):
        raise RuntimeError("an edit's node is not in the module")
    assert isinstance(result, cst.Module)
    return result


def insert_after(statements: list[cst.BaseStatement]) -> Edit:
    """An edit that keeps the node and adds ``statements`` after it."""
    return lambda node: cst.FlattenSentinel([node, *statements])


def insert_before(statements: list[cst.BaseStatement]) -> Edit:
    """An edit that adds ``statements`` before the node; the node's leading blank lines and
    comments move to the first of them, so they stay above the block."""

    def edit(node: cst.CSTNode) -> Replacement:
        if not statements or not hasattr(node, "leading_lines"):
            return cst.FlattenSentinel([*statements, node])
        first = statements[0].with_changes(leading_lines=node.leading_lines)
        return cst.FlattenSentinel([first, *statements[1:], node.with_changes(leading_lines=())])

    return edit


def surround(before: list[cst.BaseStatement], after: list[cst.BaseStatement]) -> Edit:
    """``insert_before(before)`` and ``insert_after(after)`` on the same node."""

    def edit(node: cst.CSTNode) -> Replacement:
        placed = insert_before(before)(node)
        assert isinstance(placed, cst.FlattenSentinel)
        return cst.FlattenSentinel([*placed.nodes, *after])

    return edit


def with_blank_line(statements: list[cst.BaseStatement]) -> list[cst.BaseStatement]:
    """``statements`` with one blank line above the first."""
    if not statements:
        return statements
    first = statements[0]
    assert isinstance(first, cst.SimpleStatementLine | cst.BaseCompoundStatement)
    first = first.with_changes(leading_lines=[cst.EmptyLine(indent=False), *first.leading_lines])
    return [first, *statements[1:]]


def replace_with(replacement: Replacement) -> Edit:
    return lambda node: replacement


def _line_break(indent: str) -> cst.ParenthesizedWhitespace:
    return cst.ParenthesizedWhitespace(
        first_line=cst.TrailingWhitespace(newline=cst.Newline()),
        indent=True,
        last_line=cst.SimpleWhitespace(indent),
    )


def append_parameter(node: cst.CSTNode, parameter: cst.Param) -> cst.FunctionDef:
    """The function with ``parameter`` after its last positional-or-keyword parameter.

    The parameters are laid out one a line with a trailing comma (as black lays out a signature
    that no longer fits one line); the default indentation is one level below the ``def``.
    """
    assert isinstance(node, cst.FunctionDef)
    params = [*node.params.params, parameter]
    laid_out = [
        param.with_changes(
            comma=cst.Comma(whitespace_after=_line_break("" if last else "    ")),
            whitespace_after_param=cst.SimpleWhitespace(""),
        )
        for param, last in zip(params, [False] * (len(params) - 1) + [True], strict=True)
    ]
    return node.with_changes(
        params=node.params.with_changes(params=laid_out),
        whitespace_before_params=_line_break("    "),
    )
