"""Backups of RegressionGroup rows as JSON lines, and restoring them.

Each line is one row: every column of ``sentry_regressiongroup`` by name, datetimes as ISO-8601.
The cleanup appends the rows of a batch, flushed and fsynced, before that batch commits.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import Field

from regression_tracking.models import Project, RegressionGroup

# Rows looked up or inserted per statement when restoring.
RESTORE_CHUNK_SIZE = 1000


def _columns() -> list[Field[Any, Any]]:
    return list(RegressionGroup._meta.concrete_fields)


def row_to_dict(regression: RegressionGroup) -> dict[str, Any]:
    """Every column of the row, by column name, JSON-ready (datetimes to the microsecond)."""
    row = {}
    for field in _columns():
        value = field.value_from_object(regression)
        row[field.column] = value.isoformat() if isinstance(value, datetime) else value
    return row


class BackupWriter:
    """Appends rows to a JSON-lines file; ``write`` returns only once they are on disk."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        # Raises OSError (a directory, no permission, a missing folder) before anything is changed.
        self._file: IO[str] = self.path.open("a", encoding="utf-8")
        self.rows_written = 0

    def write(self, regressions: Iterable[RegressionGroup]) -> None:
        lines = [json.dumps(row_to_dict(r), ensure_ascii=False) + "\n" for r in regressions]
        self._file.writelines(lines)
        self._file.flush()
        os.fsync(self._file.fileno())
        self.rows_written += len(lines)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> BackupWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class BackupFormatError(ValueError):
    """A backup line that cannot be restored; names the line."""

    def __init__(self, line_number: int, problem: str) -> None:
        super().__init__(f"line {line_number}: {problem}")
        self.line_number = line_number
        self.problem = problem


def _parse_line(line_number: int, line: str) -> RegressionGroup:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        raise BackupFormatError(line_number, f"not valid JSON ({error.msg})") from None
    if not isinstance(data, dict):
        raise BackupFormatError(line_number, "not a JSON object")
    columns = {field.column: field for field in _columns()}
    missing = sorted(set(columns) - set(data))
    unknown = sorted(set(data) - set(columns))
    if missing:
        raise BackupFormatError(line_number, f"missing columns: {', '.join(missing)}")
    if unknown:
        raise BackupFormatError(line_number, f"unknown columns: {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for column, field in columns.items():
        value = data[column]
        if value is None and not field.null:
            raise BackupFormatError(line_number, f"{column} must not be null")
        if isinstance(value, bool) and field.get_internal_type() != "BooleanField":
            raise BackupFormatError(line_number, f"{column}: {value!r} is not a valid value")
        try:
            values[field.attname] = field.to_python(value)
        except ValidationError as error:
            raise BackupFormatError(
                line_number, f"{column}: {value!r} is not a valid value ({error.messages[0]})"
            ) from None
        parsed = values[field.attname]
        is_datetime = field.get_internal_type() == "DateTimeField"
        if is_datetime and value is not None and (parsed is None or parsed.tzinfo is None):
            raise BackupFormatError(
                line_number, f"{column}: {value!r} is not an ISO-8601 time with a zone"
            )
    return RegressionGroup(**values)


def read_backup(lines: Iterable[str]) -> list[RegressionGroup]:
    """Parse every line (blank lines skipped); raises ``BackupFormatError`` at the first bad one.

    When one id appears on several lines, the last wins: it is the row's latest saved state.
    """
    rows: dict[int, RegressionGroup] = {}
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if not line.endswith("\n"):
            # A line cut short by a crash mid-write: refuse rather than guess.
            try:
                json.loads(line)
            except json.JSONDecodeError:
                raise BackupFormatError(line_number, "truncated line") from None
        regression = _parse_line(line_number, line)
        rows.pop(regression.id, None)
        rows[regression.id] = regression
    return list(rows.values())


@dataclass(frozen=True, slots=True)
class RestoreResult:
    restored: int
    # Rows whose id already exists: left as they are.
    skipped_existing: int


class UnknownProjectsError(ValueError):
    def __init__(self, project_ids: Sequence[int]) -> None:
        super().__init__(
            "rows belong to projects that do not exist: " + ", ".join(map(str, project_ids))
        )
        self.project_ids = list(project_ids)


def _chunks(values: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def restore_regression_groups(
    rows: Sequence[RegressionGroup], *, using: str = DEFAULT_DB_ALIAS
) -> RestoreResult:
    """Insert the rows with their ids, all or nothing; ids that already exist are skipped."""
    ids = [row.id for row in rows]
    project_ids = sorted({row.project_id for row in rows})
    with transaction.atomic(using=using):
        existing: set[int] = set()
        for chunk in _chunks(ids, RESTORE_CHUNK_SIZE):
            existing.update(
                RegressionGroup.objects.using(using)
                .filter(id__in=chunk)
                .values_list("id", flat=True)
            )
        known: set[int] = set()
        for chunk in _chunks(project_ids, RESTORE_CHUNK_SIZE):
            known.update(
                Project.objects.using(using).filter(id__in=chunk).values_list("id", flat=True)
            )
        if unknown := [p for p in project_ids if p not in known]:
            raise UnknownProjectsError(unknown)
        new_rows = [row for row in rows if row.id not in existing]
        RegressionGroup.objects.using(using).bulk_create(new_rows, batch_size=RESTORE_CHUNK_SIZE)
    return RestoreResult(restored=len(new_rows), skipped_existing=len(existing))
