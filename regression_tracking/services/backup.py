"""Backups of RegressionGroup rows as JSON lines, and restoring them.

Each line is one row: every column of ``sentry_regressiongroup`` by name, datetimes as ISO-8601.
The cleanup appends the rows of a batch, flushed and fsynced, before that batch commits.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import Field, ForeignKey

from regression_tracking.models import Project, RegressionGroup

logger = logging.getLogger(__name__)

# Rows looked up or inserted per statement when restoring.
RESTORE_CHUNK_SIZE = 1000
# Bytes read at a time when looking back for the start of a cut last line.
CUT_LINE_SEARCH_CHUNK = 64 * 1024


def _columns() -> list[Field[Any, Any]]:
    return list(RegressionGroup._meta.concrete_fields)


def row_to_dict(regression: RegressionGroup) -> dict[str, Any]:
    """Every column of the row, by column name, JSON-ready (datetimes to the microsecond)."""
    row = {}
    for field in _columns():
        value = field.value_from_object(regression)
        row[field.column] = value.isoformat() if isinstance(value, datetime) else value
    return row


class BackupWriteError(OSError):
    """Rows could not be written to the backup (a full disk, a lost mount): do not commit them."""


class BackupWriter:
    """Appends rows to a JSON-lines file; ``write`` returns only once they are on disk.

    A run killed inside ``write`` leaves its last line cut short. That batch never committed (a
    batch commits only after ``write`` returns), so the next writer drops the cut line before
    appending: otherwise its first line would be glued to it and the file could not be restored.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        # Raises OSError (a directory, no permission, a missing folder) before anything is changed.
        self._file: IO[str] = self.path.open("a", encoding="utf-8")
        try:
            self.dropped_bytes = _drop_cut_last_line(self.path, self._file)
        except BaseException:
            self._file.close()
            raise
        self.rows_written = 0
        self._failed = False

    def write(self, regressions: Iterable[RegressionGroup]) -> None:
        """Append the rows; raises ``BackupWriteError`` when they may not all be on disk."""
        lines = [json.dumps(row_to_dict(r), ensure_ascii=False) + "\n" for r in regressions]
        try:
            self._file.writelines(lines)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as error:
            self._failed = True
            raise BackupWriteError(error.errno, error.strerror, str(self.path)) from error
        self.rows_written += len(lines)

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:
            # Closing flushes what a failed write left buffered, and fails again: that error
            # is already reported, and those rows' batch was not committed.
            if not self._failed:
                raise

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


def _drop_cut_last_line(path: Path, file: IO[str]) -> int:
    """Truncate a last line without its newline (a write cut short); the bytes dropped.

    Refuses (``BackupFormatError``) when that line does not start like a backup line: the file is
    then not a backup, and is left as it is. Only a regular file we may read is looked at.
    """
    if not path.is_file() or not os.access(path, os.R_OK):
        return 0
    with path.open("rb") as reader:
        size = reader.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        reader.seek(size - 1)
        if reader.read(1) == b"\n":
            return 0
        # Back to the last newline; a cut line is shorter than one row, so this reads little.
        start = size
        while start > 0:
            chunk_start = max(0, start - CUT_LINE_SEARCH_CHUNK)
            reader.seek(chunk_start)
            chunk = reader.read(start - chunk_start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                start = chunk_start + newline + 1
                break
            start = chunk_start
        reader.seek(start)
        last_line = reader.read(size - start)
        if not last_line.startswith(b'{"'):
            reader.seek(0)
            line_number = sum(
                block.count(b"\n") for block in iter(lambda: reader.read(1 << 20), b"")
            )
            raise BackupFormatError(
                line_number + 1,
                "the file does not end with a complete line and that line is not a backup row; "
                "not a backup file?",
            )
    file.flush()
    os.truncate(file.fileno(), start)
    os.fsync(file.fileno())
    logger.warning(
        "regression_tracking.backup.cut_line_dropped",
        extra={"path": str(path), "dropped_bytes": size - start},
    )
    return size - start


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
            parsed = field.to_python(value)
            if parsed is not None:
                # The column's range or length: what the database can store, checked here so
                # a bad value names its line instead of failing the insert (or, on SQLite,
                # overflowing in the driver).
                _stored_as(field).run_validators(parsed)
        except ValidationError as error:
            raise BackupFormatError(
                line_number, f"{column}: {value!r} is not a valid value ({error.messages[0]})"
            ) from None
        if field.get_internal_type() == "DateTimeField" and value is not None:
            if parsed is None or parsed.tzinfo is None:
                raise BackupFormatError(
                    line_number, f"{column}: {value!r} is not an ISO-8601 time with a zone"
                )
            try:
                parsed = parsed.astimezone(UTC)
            except OverflowError:
                raise BackupFormatError(
                    line_number, f"{column}: {value!r} is out of range in UTC"
                ) from None
        values[field.attname] = parsed
    return RegressionGroup(**values)


def _stored_as(field: Field[Any, Any]) -> Field[Any, Any]:
    """The field whose validators bound a column's values: a foreign key's target."""
    return field.target_field if isinstance(field, ForeignKey) else field


def decode_lines(lines: Iterable[bytes]) -> Iterator[str]:
    """Lines of a file opened in binary as text; ``BackupFormatError`` names a line not UTF-8."""
    for line_number, line in enumerate(lines, start=1):
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError as error:
            raise BackupFormatError(
                line_number,
                f"not UTF-8 text (byte {line[error.start]:#04x} at column {error.start + 1})",
            ) from None


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
    # Rows of a project that no longer exists (with skip_missing_projects).
    skipped_missing_project: int = 0


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
    rows: Sequence[RegressionGroup],
    *,
    skip_missing_projects: bool = False,
    using: str = DEFAULT_DB_ALIAS,
) -> RestoreResult:
    """Insert the rows with their ids, all or nothing; ids that already exist are skipped.

    Rows of a project that no longer exists raise ``UnknownProjectsError`` (nothing written), or
    with ``skip_missing_projects`` are left out and counted.
    """
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
        unknown = [p for p in project_ids if p not in known]
        if unknown and not skip_missing_projects:
            raise UnknownProjectsError(unknown)
        orphaned_rows = [row for row in rows if row.project_id not in known]
        new_rows = [row for row in rows if row.id not in existing and row.project_id in known]
        RegressionGroup.objects.using(using).bulk_create(new_rows, batch_size=RESTORE_CHUNK_SIZE)
    return RestoreResult(
        restored=len(new_rows),
        skipped_existing=len(existing),
        skipped_missing_project=len([r for r in orphaned_rows if r.id not in existing]),
    )
