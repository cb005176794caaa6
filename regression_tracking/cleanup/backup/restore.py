"""Restoring backed-up RegressionGroups: all or nothing, in bounded memory, never over other rows.

A file is read twice and never held: the first pass checks every line and keeps only each row's id
(8 bytes) and the set of projects; the second inserts the rows in chunks inside one transaction.
A row is skipped as already present when its id holds the same regression (type, project,
fingerprint, version); it is a conflict when its id holds a different one, or when its unique key
was taken again since the cleanup (the detector creating the next regression of the endpoint is
the cleanup's intended effect). Conflicts refuse the whole file, or with ``skip_conflicts`` are
left out and counted. The table's id sequence is moved past the restored ids in the same
transaction, so the next rows Sentry or the ORM creates do not collide with them.
"""

from __future__ import annotations

import errno
import os
import stat
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

from django.db import DEFAULT_DB_ALIAS, OperationalError, transaction

from regression_tracking.cleanup.backup.rows import parse_lines, parse_lines_values, read_lines
from regression_tracking.cleanup.backup.sequences import advance_id_sequence
from regression_tracking.cleanup.locking import (
    LOCK_NOT_AVAILABLE,
    QUERY_CANCELED,
    set_local_timeouts,
    sqlstate,
)
from regression_tracking.models import Project, RegressionGroup
from regression_tracking.ops.output_files import special_kind

# Rows looked up or inserted per statement when restoring.
RESTORE_CHUNK_SIZE = 1000
# Every restore statement on PostgreSQL: wait this long for a table or row lock (an ALTER TABLE or
# VACUUM FULL queued on the table, a cleanup's batch), run this long at most.
RESTORE_LOCK_TIMEOUT = "5s"
RESTORE_STATEMENT_TIMEOUT = "60s"

# (type, project_id, fingerprint, version): the table's unique key.
UniqueKey = tuple[int, int, str, int]


@dataclass(frozen=True, slots=True)
class RestoreResult:
    restored: int
    # Rows whose id already holds the same regression: left as they are.
    skipped_existing: int
    # Rows of a project that no longer exists (with skip_missing_projects).
    skipped_missing_project: int = 0
    # Rows whose id or unique key another row holds (with skip_conflicts).
    skipped_conflicts: int = 0


class UnknownProjectsError(ValueError):
    def __init__(self, project_ids: Sequence[int]) -> None:
        shown = ", ".join(map(str, project_ids[:20])) + (" …" if len(project_ids) > 20 else "")
        super().__init__(f"rows belong to projects that do not exist: {shown}")
        self.project_ids = list(project_ids)


class RestoreConflictError(ValueError):
    """Rows the database holds other rows for; names the first and counts them."""

    def __init__(self, conflicts: int, first: str) -> None:
        rows = "row conflicts" if conflicts == 1 else "rows conflict"
        super().__init__(f"{conflicts} {rows} with rows in the database; first: {first}")
        self.conflicts = conflicts
        self.first = first


class RestoreTimeoutError(RuntimeError):
    """A restore statement waited past its lock timeout or ran past its statement timeout."""


def _key(row: RegressionGroup) -> UniqueKey:
    return (row.type, row.project_id, row.fingerprint, row.version)


def _where(line_number: int | None) -> str:
    return f"line {line_number}: " if line_number is not None else ""


def _chunks(
    rows: Iterable[tuple[int | None, RegressionGroup]], size: int
) -> Iterator[list[tuple[int | None, RegressionGroup]]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def restore_regression_groups(
    rows: Iterable[RegressionGroup],
    *,
    skip_missing_projects: bool = False,
    skip_conflicts: bool = False,
    using: str = DEFAULT_DB_ALIAS,
) -> RestoreResult:
    """Insert rows held in memory (e.g. ``read_backup``'s) with their ids, all or nothing.

    When one id comes several times the last wins. See ``restore_backup_file`` for a file.
    """
    latest = {row.id: row for row in rows}
    return _restore(
        ((None, row) for row in latest.values()),
        project_ids={row.project_id for row in latest.values()},
        skip_missing_projects=skip_missing_projects,
        skip_conflicts=skip_conflicts,
        using=using,
    )


def restore_backup_file(
    path: str | os.PathLike[str],
    *,
    skip_missing_projects: bool = False,
    skip_conflicts: bool = False,
    using: str = DEFAULT_DB_ALIAS,
) -> RestoreResult:
    """Restore a backup file of any size: every line checked before the database is touched.

    ``BackupFormatError`` names a bad line (nothing written); ``OSError`` when it cannot be read.
    When one id is on several lines, the last wins: it is the row's latest saved state.
    """
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        # A FIFO would block, and could not be read twice.
        raise OSError(errno.EINVAL, f"{special_kind(mode)}, not a backup file", os.fspath(path))
    ids = array("q")
    project_ids: set[int] = set()
    with open(path, "rb") as file:
        for _line_number, values in parse_lines_values(read_lines(file)):
            ids.append(values["id"])
            project_ids.add(values["project_id"])
    superseded = _superseded_positions(ids)
    del ids

    def rows() -> Iterator[tuple[int | None, RegressionGroup]]:
        with open(path, "rb") as file:
            for position, (line_number, row) in enumerate(parse_lines(read_lines(file))):
                if position not in superseded:
                    yield line_number, row

    return _restore(
        rows(),
        project_ids=project_ids,
        skip_missing_projects=skip_missing_projects,
        skip_conflicts=skip_conflicts,
        using=using,
    )


def _superseded_positions(ids: array[int]) -> set[int]:
    """Positions of rows whose id comes again later (usually none: a set of the few that do)."""
    repeated: set[int] = set()
    previous = None
    for value in sorted(ids):
        if value == previous:
            repeated.add(value)
        previous = value
    if not repeated:
        return set()
    seen: set[int] = set()
    superseded = set()
    for position in range(len(ids) - 1, -1, -1):
        value = ids[position]
        if value in repeated:
            if value in seen:
                superseded.add(position)
            seen.add(value)
    return superseded


def _restore(
    rows: Iterable[tuple[int | None, RegressionGroup]],
    *,
    project_ids: set[int],
    skip_missing_projects: bool,
    skip_conflicts: bool,
    using: str,
) -> RestoreResult:
    try:
        with transaction.atomic(using=using):
            set_local_timeouts(
                using,
                lock_timeout=RESTORE_LOCK_TIMEOUT,
                statement_timeout=RESTORE_STATEMENT_TIMEOUT,
            )
            known = _existing_projects(sorted(project_ids), using)
            unknown = sorted(project_ids - known)
            if unknown and not skip_missing_projects:
                raise UnknownProjectsError(unknown)
            return _insert(rows, known=known, skip_conflicts=skip_conflicts, using=using)
    except OperationalError as error:
        state = sqlstate(error)
        if state == LOCK_NOT_AVAILABLE:
            raise RestoreTimeoutError(
                f"waited more than {RESTORE_LOCK_TIMEOUT} (lock_timeout) for a lock on "
                f"{RegressionGroup._meta.db_table}: another session holds it (an ALTER TABLE, "
                "a VACUUM FULL, a long transaction)"
            ) from error
        if state == QUERY_CANCELED:
            raise RestoreTimeoutError(
                f"a statement ran longer than {RESTORE_STATEMENT_TIMEOUT} (statement_timeout)"
            ) from error
        raise


def _existing_projects(project_ids: Sequence[int], using: str) -> set[int]:
    known: set[int] = set()
    for start in range(0, len(project_ids), RESTORE_CHUNK_SIZE):
        chunk = project_ids[start : start + RESTORE_CHUNK_SIZE]
        known.update(Project.objects.using(using).filter(id__in=chunk).values_list("id", flat=True))
    return known


def _insert(
    rows: Iterable[tuple[int | None, RegressionGroup]],
    *,
    known: set[int],
    skip_conflicts: bool,
    using: str,
) -> RestoreResult:
    restored = existing = missing_project = conflicts = 0
    first_conflict = ""
    manager = RegressionGroup.objects.using(using)
    for chunk in _chunks(rows, RESTORE_CHUNK_SIZE):
        in_projects = [(line, row) for line, row in chunk if row.project_id in known]
        missing_project += len(chunk) - len(in_projects)
        if not in_projects:
            continue
        ids = [row.id for _line, row in in_projects]
        by_id: dict[int, UniqueKey] = {
            row_id: (row_type, project_id, fingerprint, version)
            for row_id, row_type, project_id, fingerprint, version in manager.filter(
                id__in=ids
            ).values_list("id", "type", "project_id", "fingerprint", "version")
        }
        # A superset of the rows holding one of the chunk's unique keys: IN lists over the unique
        # index's leading columns, so it is an index scan, never a scan of the table.
        by_key: dict[UniqueKey, int] = {
            (row_type, project_id, fingerprint, version): row_id
            for row_id, row_type, project_id, fingerprint, version in manager.filter(
                type__in={row.type for _line, row in in_projects},
                project_id__in={row.project_id for _line, row in in_projects},
                fingerprint__in={row.fingerprint for _line, row in in_projects},
            ).values_list("id", "type", "project_id", "fingerprint", "version")
        }
        new_rows = []
        for line_number, row in in_projects:
            key = _key(row)
            problem = ""
            if row.id in by_id:
                if by_id[row.id] == key:
                    existing += 1
                    continue
                problem = (
                    f"id {row.id} is held by a different regression group (type {by_id[row.id][0]},"
                    f" project {by_id[row.id][1]}, fingerprint {by_id[row.id][2]},"
                    f" version {by_id[row.id][3]})"
                )
            elif key in by_key:
                problem = (
                    f"id {row.id}: regression group {by_key[key]} has the same type, project, "
                    f"fingerprint and version {row.version} (created again since the backup)"
                )
            if problem:
                conflicts += 1
                first_conflict = first_conflict or _where(line_number) + problem
                continue
            by_key[key] = row.id
            new_rows.append(row)
        if conflicts and not skip_conflicts:
            # The file is refused: the rest is only counted.
            continue
        manager.bulk_create(new_rows, batch_size=RESTORE_CHUNK_SIZE)
        restored += len(new_rows)
    if conflicts and not skip_conflicts:
        raise RestoreConflictError(conflicts, first_conflict)
    # Even when every row was present already: a restore made before this reset left the rows
    # and a sequence behind them.
    advance_id_sequence(RegressionGroup, using=using)
    return RestoreResult(
        restored=restored,
        skipped_existing=existing,
        skipped_missing_project=missing_project,
        skipped_conflicts=conflicts,
    )
