"""What every fixer reports: the anchors it found, the ones it did not, and its rewrite."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider


@dataclass(frozen=True, slots=True)
class Found:
    """An anchor found: where, for which site, and what it is."""

    path: str
    line: int
    site: str
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}  {self.site}  {self.what}"


@dataclass(frozen=True, slots=True)
class Missing:
    """An anchor not found: the site it belongs to and what was looked for."""

    path: str
    site: str
    looked_for: str

    def __str__(self) -> str:
        return f"{self.path}  {self.site}  NOT FOUND: {self.looked_for}"


class AnchorMissing(Exception):
    """Raised by a fixer's ``locate`` for the first anchor it cannot find."""

    def __init__(self, looked_for: str) -> None:
        super().__init__(looked_for)
        self.looked_for = looked_for


@dataclass
class Located:
    """A fixer's anchors in one module, and what rewrites it (None: already ported)."""

    found: list[tuple[cst.CSTNode, str]] = field(default_factory=list)
    rewrite: Callable[[cst.Module], cst.Module] | None = None
    done: str | None = None


class Locator:
    """Line numbers for the nodes of one parsed module (the module is not copied)."""

    def __init__(self, module: cst.Module) -> None:
        self.module = module
        self._positions = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)

    def line(self, node: cst.CSTNode) -> int:
        position: CodeRange = self._positions[node]
        return position.start.line

    def code(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node)


@dataclass(frozen=True)
class Fixer:
    """One site: the file it rewrites and how it finds and rewrites its anchors."""

    site: str
    path: str
    locate: Callable[[Locator], Located]


@dataclass(frozen=True)
class NewFile:
    """A file the port adds: written when absent, left when identical, refused when different."""

    site: str
    path: str
    text: str


Site = Fixer | NewFile
Sites = Sequence[Site]
