"""One backup line is one RegressionGroup row: every column by name, datetimes as ISO-8601.

A line is judged by parsing it, column by column, as the model and Sentry's bounded fields would
take it: exact integers in range (ids and versions from 1, ``type`` only a RegressionType),
finite floats, text that is valid Unicode without NUL and fits its column, aware datetimes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from functools import cache
from typing import IO, Any

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db.models import Field, ForeignKey
from django.utils.dateparse import parse_datetime

from regression_tracking.models import RegressionGroup, RegressionType

# A row is a few hundred bytes; a longer line is not one, and is never read whole into memory.
MAX_LINE_BYTES = 64 * 1024
# How much of a bad value an error message shows.
SHOWN_VALUE_CHARS = 60
# Columns whose values start at 1 (ids, and versions: the first version of a regression is 1).
_AT_LEAST_ONE = frozenset({"id", "project_id", "version"})
_TYPES = frozenset(int(value) for value in RegressionType.values)


class BackupFormatError(ValueError):
    """A backup line that cannot be restored; names the line."""

    def __init__(self, line_number: int, problem: str) -> None:
        super().__init__(f"line {line_number}: {problem}")
        self.line_number = line_number
        self.problem = problem


class _BadValue(ValueError):
    pass


def columns() -> list[Field[Any, Any]]:
    return list(RegressionGroup._meta.concrete_fields)


def row_to_dict(regression: RegressionGroup) -> dict[str, Any]:
    """Every column of the row, by column name, JSON-ready (datetimes to the microsecond)."""
    row = {}
    for field in columns():
        value = field.value_from_object(regression)
        row[field.column] = value.isoformat() if isinstance(value, datetime) else value
    return row


def row_line(regression: RegressionGroup) -> str:
    return json.dumps(row_to_dict(regression), ensure_ascii=False) + "\n"


def _show(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= SHOWN_VALUE_CHARS else shown[: SHOWN_VALUE_CHARS - 1] + "…"


def _stored_as(field: Field[Any, Any]) -> Field[Any, Any]:
    """The field whose validators bound a column's values: a foreign key's target."""
    return field.target_field if isinstance(field, ForeignKey) else field


def _integer(field: Field[Any, Any], value: object) -> int:
    # bool is an int in Python, and 3.9 or "3" would be coerced by int(): only an exact int.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _BadValue("not an integer")
    if field.column in _AT_LEAST_ONE and value < 1:
        raise _BadValue("must be at least 1")
    if field.column == "type" and value not in _TYPES:
        raise _BadValue("not a regression type: " + ", ".join(map(str, sorted(_TYPES))))
    return value


def _float(field: Field[Any, Any], value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _BadValue("not a number")
    try:
        number = float(value)
    except OverflowError:
        raise _BadValue("out of range") from None
    if not math.isfinite(number):
        raise _BadValue("not a finite number")
    return number


def _text(field: Field[Any, Any], value: object) -> str:
    if not isinstance(value, str):
        raise _BadValue("not a string")
    if "\x00" in value:
        raise _BadValue("contains NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _BadValue("not valid Unicode (a lone surrogate)") from None
    if field.max_length is not None and len(value) > field.max_length:
        raise _BadValue(f"longer than {field.max_length} characters")
    return value


def _boolean(field: Field[Any, Any], value: object) -> bool:
    if not isinstance(value, bool):
        raise _BadValue("not true or false")
    return value


def _datetime(field: Field[Any, Any], value: object) -> datetime:
    if not isinstance(value, str):
        raise _BadValue("not an ISO-8601 time")
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise _BadValue("not an ISO-8601 time")
    if parsed.tzinfo is None:
        raise _BadValue("is not an ISO-8601 time with a zone")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise _BadValue("out of range in UTC") from None


_PARSERS: dict[str, Callable[[Field[Any, Any], object], Any]] = {
    "AutoField": _integer,
    "BigAutoField": _integer,
    "IntegerField": _integer,
    "BigIntegerField": _integer,
    "PositiveIntegerField": _integer,
    "ForeignKey": _integer,
    "FloatField": _float,
    "CharField": _text,
    "BooleanField": _boolean,
    "DateTimeField": _datetime,
}


@cache
def _int_bounds(field: Field[Any, Any]) -> tuple[int | None, int | None]:
    """The column's range, read once from the validators of the field that stores it."""
    low = high = None
    for validator in _stored_as(field).validators:
        if isinstance(validator, MinValueValidator):
            low = int(validator.limit_value)
        elif isinstance(validator, MaxValueValidator):
            high = int(validator.limit_value)
    return low, high


def _column_value(field: Field[Any, Any], value: object) -> Any:
    parsed = _PARSERS[field.get_internal_type()](field, value)
    if isinstance(parsed, int) and not isinstance(parsed, bool):
        # The column's range: what the database can store, checked here so a bad value names
        # its line instead of failing the insert (or, on SQLite, overflowing in the driver).
        low, high = _int_bounds(field)
        if low is not None and parsed < low:
            raise _BadValue(f"must be at least {low}")
        if high is not None and parsed > high:
            raise _BadValue(f"must be at most {high}")
    return parsed


@cache
def _fields() -> dict[str, Field[Any, Any]]:
    return {field.column: field for field in columns()}


def parse_values(line_number: int, line: str) -> dict[str, Any]:
    """The row on ``line`` as model field values, every column checked (``BackupFormatError``)."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        raise BackupFormatError(line_number, f"not valid JSON ({error.msg})") from None
    except RecursionError:
        raise BackupFormatError(line_number, "not valid JSON (nested too deep)") from None
    if not isinstance(data, dict):
        raise BackupFormatError(line_number, "not a JSON object")
    fields = _fields()
    if data.keys() != fields.keys():
        missing = sorted(set(fields) - set(data))
        unknown = sorted(set(data) - set(fields))
        if missing:
            raise BackupFormatError(line_number, f"missing columns: {', '.join(missing)}")
        shown = ", ".join(_show(name) if not name.isidentifier() else name for name in unknown)
        raise BackupFormatError(line_number, f"unknown columns: {shown}")
    values: dict[str, Any] = {}
    for column, field in fields.items():
        value = data[column]
        if value is None:
            if not field.null:
                raise BackupFormatError(line_number, f"{column} must not be null")
            values[field.attname] = None
            continue
        try:
            values[field.attname] = _column_value(field, value)
        except _BadValue as error:
            problem = str(error)
            if problem.startswith("is "):
                raise BackupFormatError(
                    line_number, f"{column}: {_show(value)} {problem}"
                ) from None
            raise BackupFormatError(
                line_number, f"{column}: {_show(value)} is not a valid value ({problem})"
            ) from None
    return values


def parse_row(line_number: int, line: str) -> RegressionGroup:
    """The row on ``line``, every column checked; ``BackupFormatError`` names the first problem."""
    return RegressionGroup(**parse_values(line_number, line))


def is_backup_row(data: bytes) -> bool:
    """Whether ``data`` (one line, with or without its newline) is a complete, valid row."""
    if len(data) > MAX_LINE_BYTES:
        return False
    try:
        parse_row(1, data.decode("utf-8"))
    except (UnicodeDecodeError, BackupFormatError):
        return False
    return True


def read_lines(file: IO[bytes]) -> Iterator[tuple[int, str]]:
    """(line number, text) of a file opened in binary, one bounded line at a time.

    ``BackupFormatError`` names a line that is not UTF-8, or longer than any row can be.
    """
    line_number = 0
    while line := file.readline(MAX_LINE_BYTES + 1):
        line_number += 1
        if len(line) > MAX_LINE_BYTES:
            raise BackupFormatError(
                line_number, f"longer than {MAX_LINE_BYTES} bytes: not a backup row"
            )
        yield line_number, _decode(line_number, line)


def _decode(line_number: int, line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BackupFormatError(
            line_number,
            f"not UTF-8 text (byte {line[error.start]:#04x} at column {error.start + 1})",
        ) from None


def parse_lines(lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, RegressionGroup]]:
    """(line number, row) for every non-blank line; raises at the first bad one (see below)."""
    for line_number, values in parse_lines_values(lines):
        yield line_number, RegressionGroup(**values)


def parse_lines_values(lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, field values) for every non-blank line; raises at the first bad one.

    A last line without its newline is kept when it parses as a row (an editor or a copy dropped
    the newline); one that does not is a write cut short, refused rather than guessed at.
    """
    for line_number, line in lines:
        if not line.strip():
            continue
        if not line.endswith("\n"):
            try:
                json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                raise BackupFormatError(line_number, "truncated line") from None
        yield line_number, parse_values(line_number, line)


def read_backup(lines: Iterable[str]) -> list[RegressionGroup]:
    """Parse every line (blank lines skipped) into rows; for small backups held in memory.

    When one id appears on several lines, the last wins: it is the row's latest saved state.
    ``restore_backup_file`` restores a file of any size without holding its rows.
    """
    rows: dict[int, RegressionGroup] = {}
    for _line_number, regression in parse_lines(enumerate(lines, start=1)):
        rows.pop(regression.id, None)
        rows[regression.id] = regression
    return list(rows.values())
