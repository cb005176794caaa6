"""The dry run's orphan listing: an aligned table for people, JSON lines for tools."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from django.core.management.base import OutputWrapper

from regression_tracking.cleanup.listing import (
    DEFAULT_LIST_LIMIT,
    ListedOrphan,
    OrphanListing,
    list_orphans,
)
from regression_tracking.durations import format_age
from regression_tracking.models import RegressionGroup
from regression_tracking.services import BatchReport, CleanupAction, CleanupResult

COLUMNS = ("id", "project", "slug", "type", "fingerprint", "reason", "age", "active")
# Numbers line up on the right, text on the left.
RIGHT_ALIGNED = frozenset({"id", "project"})


def _escaped(char: str) -> str:
    if char.isprintable() and char != "\\":
        return char
    # As the JSON output writes it (\\, \n, \t, \u001b, surrogate pairs beyond U+FFFF);
    # JSON leaves DEL as it is, which a terminal does not show: \u007f.
    escaped = json.dumps(char)[1:-1]
    return escaped if escaped != char else f"\\u{ord(char):04x}"


def printable(text: str) -> str:
    """``text`` with each backslash and each character that is not printable (control characters,
    line and paragraph separators) escaped as JSON escapes them, so a cell never breaks its line."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(map(_escaped, text))


def _cells(orphan: ListedOrphan) -> tuple[str, ...]:
    return (
        str(orphan.id),
        str(orphan.project_id),
        printable(orphan.project_slug or "-"),
        orphan.type.name.lower(),
        printable(orphan.fingerprint),
        str(orphan.reason),
        format_age(orphan.age),
        "yes" if orphan.active else "no",
    )


def format_table(listing: OrphanListing) -> Iterator[str]:
    """The header and one line per listed orphan, columns aligned; nothing when none is listed."""
    if not listing.orphans:
        return
    rows = [COLUMNS, *(_cells(orphan) for orphan in listing.orphans)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(COLUMNS))]
    for row in rows:
        cells = (
            cell.rjust(width) if name in RIGHT_ALIGNED else cell.ljust(width)
            for name, cell, width in zip(COLUMNS, row, widths, strict=True)
        )
        yield "  ".join(cells).rstrip()


def as_json(orphan: ListedOrphan) -> dict[str, Any]:
    """One orphan as a JSON object: the age in whole seconds, the date in ISO 8601."""
    return {
        "id": orphan.id,
        "project_id": orphan.project_id,
        "project_slug": orphan.project_slug,
        "type": orphan.type.name.lower(),
        "fingerprint": orphan.fingerprint,
        "reason": str(orphan.reason),
        "age_seconds": max(int(orphan.age.total_seconds()), 0),
        "date_added": orphan.date_added.isoformat(),
        "active": orphan.active,
    }


def json_lines(listing: OrphanListing) -> Iterator[str]:
    """One JSON object a line per listed orphan."""
    for orphan in listing.orphans:
        yield json.dumps(as_json(orphan))


def format_footer(*, listed: int, total: int, verb: str, limit: int) -> str:
    """``listed 100 of 2,345 orphans that would be deleted; 2,245 left out (--list-limit 100)``."""
    line = f"listed {listed:,} of {total:,} orphans that {verb}"
    if total > listed:
        line += f"; {total - listed:,} left out (--list-limit {limit})"
    return line


class DryRunListing:
    """``--list``: the first ``limit`` ids a dry run's batches would act on, then their listing.

    The ids come from the batches themselves, so the listing is exactly what the dry run would act
    on: the same scope, grace period, action, caps and interrupt. Memory is bounded by ``limit``.
    """

    def __init__(self, *, limit: int | None = None) -> None:
        self.limit = DEFAULT_LIST_LIMIT if limit is None else limit
        self.ids: list[int] = []

    def add(self, batch: BatchReport) -> None:
        if len(self.ids) < self.limit:
            self.ids.extend(batch.acted_ids[: self.limit - len(self.ids)])

    def write(
        self,
        out: OutputWrapper,
        result: CleanupResult,
        *,
        verb: str,
        output_format: str,
        verbosity: int,
        using: str,
    ) -> dict[str, int]:
        """Print the listing (table and a footer saying the orphans ``verb``, or JSON lines);
        return ``listed`` and ``left_out`` for the summary."""
        # Read again by id with the same rule (list_orphans): a row that got its issue since the
        # dry run's batch, or went away, is not listed and counts as left out.
        found = list_orphans(
            RegressionGroup.objects.filter(id__in=self.ids),
            # The run's own "old enough": one cutoff for its detection, batches and listing.
            cutoff=result.cutoff,
            active_only=result.action is CleanupAction.DEACTIVATE,
            limit=self.limit,
            using=using,
        )
        listed = len(found.orphans)
        if output_format == "json":
            lines = list(json_lines(found))
        else:
            footer = format_footer(
                listed=listed, total=result.would_act, verb=verb, limit=self.limit
            )
            # A blank line before the summary, when there is one.
            lines = [*format_table(found), footer, *([""] if verbosity else [])]
        for line in lines:
            out.write(line)
        return {"listed": listed, "left_out": result.would_act - listed}
