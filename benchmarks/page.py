"""The figures page (docs/benchmarks.md): each benchmark rewrites its own section of it.

A section sits between ``<!-- figures:NAME -->`` and ``<!-- /figures:NAME -->``; the rest of the
page (what each benchmark measures and how) is prose the benchmarks leave alone. Every section opens
with one line naming the machine, the server and the date, so figures are never hand-edited and
never undated.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

from django.db import connection

DEFAULT_PAGE = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def machine_line(command: str) -> str:
    """``Measured 2026-12-07 14:05 UTC on host (2 cores, x86_64), Python 3.11.7, PostgreSQL 15.19:
    `command`.``"""
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        (server_version,) = cursor.fetchone()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Measured {when} on {platform.node() or 'an unnamed host'} ({os.cpu_count()} cores, "
        f"{platform.machine()}), Python {platform.python_version()}, PostgreSQL "
        f"{server_version.split()[0]}: `{command}`."
    )


# user:password@ in a database URL: the page shows the user, never the password.
_PASSWORD = re.compile(r"(://[^:/@\s]*):[^@\s]*@")


def command_line(prog: str, argv: list[str] | None) -> str:
    """The command as run, with any password in a URL masked."""
    command = " ".join([prog, *(sys.argv[1:] if argv is None else argv)])
    return _PASSWORD.sub(r"\1:***@", command)


def write_section(path: Path, name: str, body: str) -> None:
    """Replace section ``name`` of the page at ``path`` with ``body`` (appended if missing)."""
    start, end = f"<!-- figures:{name} -->", f"<!-- /figures:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _match: block, text)
    else:
        text = text.rstrip() + ("\n\n" if text.strip() else "") + block + "\n"
    path.write_text(text, encoding="utf-8")


def ratio_cell(value: float, floor: float, target: float) -> str:
    """``1.31 s / 1.10 s = 1.19x``, in bold when above its target."""
    ratio = value / floor
    cell = f"{value:.2f} s / {floor:.2f} s = {ratio:.2f}x"
    return f"**{cell}**" if ratio > target else cell
