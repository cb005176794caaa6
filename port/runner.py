"""Run every site over a checkout: what it found, what is missing, and the new text per file."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst

from port.base import AnchorMissing, Fixer, Found, Located, Locator, Missing, NewFile, Site


@dataclass
class Plan:
    """The outcome of locating every site: nothing is written unless ``missing`` is empty."""

    found: list[Found] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)
    # Relative path -> (old text or None for a new file, new text); only files that change.
    changes: dict[str, tuple[str | None, str]] = field(default_factory=dict)

    def diff(self) -> str:
        chunks: list[str] = []
        for path, (old, new) in sorted(self.changes.items()):
            chunks.extend(
                difflib.unified_diff(
                    (old or "").splitlines(keepends=True),
                    new.splitlines(keepends=True),
                    fromfile="/dev/null" if old is None else f"a/{path}",
                    tofile=f"b/{path}",
                )
            )
        return "".join(chunks)


def plan(checkout: Path, sites: list[Site]) -> Plan:
    """Locate every site of ``sites`` in ``checkout`` (in order: sites of one file compose)."""
    result = Plan()
    texts: dict[str, str | None] = {}
    originals: dict[str, str] = {}
    for site in sites:
        if site.path not in texts:
            file = checkout / site.path
            texts[site.path] = file.read_text(encoding="utf-8") if file.is_file() else None
        text = texts[site.path]
        if isinstance(site, NewFile):
            _plan_new_file(checkout, site, text, result)
            if text is None and (checkout / site.path).parent.is_dir():
                texts[site.path] = site.text
            continue
        if text is None:
            result.missing.append(Missing(site.path, site.site, f"the file {site.path}"))
            continue
        as_read = originals.setdefault(site.path, text)
        # Anchors are reported on the file as it is (its line numbers); the rewrite applies to
        # the text the earlier sites of the same file made of it.
        first = _locate(site, as_read, result, report=True)
        if first is None:
            continue
        module, located = first
        if located.rewrite is not None and text != as_read:
            again = _locate(site, text, result, report=False)
            if again is None:
                continue
            module, located = again
        if located.rewrite is not None:
            texts[site.path] = located.rewrite(module).code
    for path, text in texts.items():
        file = checkout / path
        old = file.read_text(encoding="utf-8") if file.is_file() else None
        if text is not None and text != old:
            result.changes[path] = (old, text)
    return result


def _locate(
    site: Fixer, text: str, result: Plan, *, report: bool
) -> tuple[cst.Module, Located] | None:
    """The site's anchors in ``text``; None (and the site missing) when any is not found.

    ``report``: record the anchors found (with their lines in ``text``).
    """
    try:
        module = cst.parse_module(text)
    except cst.ParserSyntaxError as error:
        result.missing.append(
            Missing(site.path, site.site, f"a file libcst can parse ({error.message})")
        )
        return None
    locator = Locator(module)
    try:
        located = site.locate(locator)
    except AnchorMissing as missing:
        result.missing.append(Missing(site.path, site.site, missing.looked_for))
        return None
    if report:
        for node, what in located.found:
            result.found.append(Found(site.path, locator.line(node), site.site, what))
    return module, located


def _plan_new_file(checkout: Path, site: NewFile, text: str | None, result: Plan) -> None:
    folder = (checkout / site.path).parent
    if text is None:
        if not folder.is_dir():
            result.missing.append(
                Missing(site.path, site.site, f"the folder {folder.relative_to(checkout)}/")
            )
            return
        result.found.append(Found(site.path, 1, site.site, "new file (absent, will be written)"))
    elif text == site.text:
        result.found.append(Found(site.path, 1, site.site, "already ported (file identical)"))
    else:
        result.missing.append(
            Missing(
                site.path, site.site, "no such file, or the port's own version of it (it differs)"
            )
        )


def write(checkout: Path, changes: dict[str, tuple[str | None, str]]) -> None:
    for path, (_, new) in sorted(changes.items()):
        (checkout / path).write_text(new, encoding="utf-8")
