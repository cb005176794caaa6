"""``python -m port CHECKOUT [--check | --dry-run]``: port the orphan fix into a Sentry checkout."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from port.runner import plan, write
from port.sites import SITES


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    parser = argparse.ArgumentParser(
        prog="python -m port",
        description="Rewrite a Sentry checkout in place with the orphaned RegressionGroup fix.",
    )
    parser.add_argument("checkout", type=Path, help="the root of a getsentry/sentry checkout")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--check", action="store_true", help="print each anchor found or missing; write nothing"
    )
    mode.add_argument(
        "--dry-run",
        action="store_true",
        help="print the unified diff it would apply; write nothing",
    )
    args = parser.parse_args(argv)
    checkout: Path = args.checkout
    if not checkout.is_dir():
        err.write(f"port: {checkout} is not a folder\n")
        return 2
    result = plan(checkout, SITES)
    if args.check or result.missing:
        for found in result.found:
            out.write(f"{found}\n")
        for missing in result.missing:
            out.write(f"{missing}\n")
    if result.missing:
        sites = ", ".join(sorted({missing.site for missing in result.missing}))
        err.write(f"port: {len(result.missing)} anchor(s) not found ({sites}); nothing written\n")
        return 1
    if args.check:
        return 0
    if args.dry_run:
        out.write(result.diff())
        return 0
    if not result.changes:
        out.write("port: already ported, nothing to change\n")
        return 0
    write(checkout, result.changes)
    for path in sorted(result.changes):
        out.write(f"port: wrote {path}\n")
    return 0
