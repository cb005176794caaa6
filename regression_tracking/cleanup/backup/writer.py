"""Appending rows to a backup file: only once the run is under way, fsynced before each commit.

Constructing a ``BackupWriter`` only looks at the path. The file is opened, and its end checked,
on the first ``write``, which the cleanup makes inside its first batch: after it holds its lock
and has read the database. A run refused or failed before that leaves the file as it was.

The end of the file is judged by parsing its last line. A complete row whose newline is missing
(an editor, a copy) is kept, and the newline added. A last line that is not a row is a write cut
short by a crash (its batch never committed): it is moved aside into ``<backup>.cut-<time>``,
never discarded, so the next row does not get glued to it.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from regression_tracking.cleanup.backup.rows import MAX_LINE_BYTES, is_backup_row, row_line
from regression_tracking.models import RegressionGroup
from regression_tracking.ops.output_files import check_output_file, special_kind

# The logger keeps the name operators route in their logging configuration.
logger = logging.getLogger("regression_tracking.services.backup.writer")

# Bytes read at a time when looking back for the start of the last line, or counting lines.
READ_CHUNK = 64 * 1024
# The first bytes of every line the writer writes: a row starts with its id.
ROW_START = b'{"id": '


class BackupWriteError(OSError):
    """Rows could not be written to the backup (a full disk, a lost mount): do not commit them."""


class BackupRefusedError(ValueError):
    """The backup path is not a backup file (or not a regular file): left as it is."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class BackupWriter:
    """Appends rows to a JSON-lines file; ``write`` returns only once they are on disk.

    Raises ``OutputFileError`` at once when the path cannot be a backup (a directory, a FIFO, a
    device, a missing folder); everything else happens on the first ``write``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        check_output_file(self.path)
        self._file: IO[str] | None = None
        self.rows_written = 0
        # Set by the first write: what was done to the file's end ("" when nothing).
        self.repair = ""
        self.cut_line_path: Path | None = None
        self._failed = False

    def write(self, regressions: Iterable[RegressionGroup]) -> None:
        """Append the rows; raises ``BackupWriteError`` when they may not all be on disk."""
        lines = [row_line(regression) for regression in regressions]
        try:
            if self._file is None:
                self._file = self._open()
            self._file.writelines(lines)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as error:
            self._failed = True
            raise BackupWriteError(error.errno, error.strerror, str(self.path)) from error
        self.rows_written += len(lines)

    def _open(self) -> IO[str]:
        # O_NONBLOCK: a FIFO swapped in since the check must not block the open; it is refused.
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC
        fd = os.open(self.path, flags, 0o644)
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise BackupRefusedError(self.path, f"is {special_kind(mode)}")
            os.set_blocking(fd, True)
            self._check_end(fd)
            return open(fd, "a", encoding="utf-8", closefd=True)
        except BaseException:
            os.close(fd)
            raise

    def _check_end(self, fd: int) -> None:
        size = os.fstat(fd).st_size
        if size == 0:
            return
        head = os.pread(fd, MAX_LINE_BYTES + 1, 0)
        first_newline = head.find(b"\n")
        first_is_row = first_newline >= 0 and is_backup_row(head[: first_newline + 1])
        if os.pread(fd, 1, size - 1) == b"\n":
            if not first_is_row:
                raise BackupRefusedError(
                    self.path, "line 1 is not a backup row; not a backup file?"
                )
            return
        start = _last_line_start(fd, size)
        last_line = os.pread(fd, min(size - start, MAX_LINE_BYTES + 1), start)
        if is_backup_row(last_line) and (start == 0 or first_is_row):
            os.write(fd, b"\n")
            os.fsync(fd)
            self.repair = "newline_added"
            logger.warning(
                "regression_tracking.backup.newline_added",
                extra={"path": str(self.path), "line_bytes": size - start},
            )
            return
        line_number = _count_newlines(fd, start) + 1
        looks_cut = start == 0 and last_line.startswith(ROW_START)
        if not (first_is_row or looks_cut):
            also = ", nor is line 1" if start else ""
            raise BackupRefusedError(
                self.path,
                f"line {line_number} is not a complete backup row{also}; not a backup file?",
            )
        self.cut_line_path = _move_aside(fd, self.path, start, size)
        self.repair = "cut_line_moved"
        logger.warning(
            "regression_tracking.backup.cut_line_moved",
            extra={
                "path": str(self.path),
                "line_number": line_number,
                "moved_bytes": size - start,
                "moved_to": str(self.cut_line_path),
            },
        )

    def close(self) -> None:
        if self._file is None:
            return
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


def _last_line_start(fd: int, size: int) -> int:
    """The offset just after the last newline before ``size`` (0 when there is none)."""
    end = size
    while end > 0:
        begin = max(0, end - READ_CHUNK)
        newline = os.pread(fd, end - begin, begin).rfind(b"\n")
        if newline >= 0:
            return begin + newline + 1
        end = begin
    return 0


def _count_newlines(fd: int, end: int) -> int:
    count = 0
    for offset in range(0, end, READ_CHUNK):
        count += os.pread(fd, min(READ_CHUNK, end - offset), offset).count(b"\n")
    return count


def _move_aside(fd: int, path: Path, start: int, size: int) -> Path:
    """Copy bytes ``start..size`` into a new side file, on disk, then cut them off ``path``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    side = path.with_name(f"{path.name}.cut-{stamp}")
    side_fd = os.open(side, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        try:
            for offset in range(start, size, READ_CHUNK):
                chunk = os.pread(fd, min(READ_CHUNK, size - offset), offset)
                while chunk:
                    chunk = chunk[os.write(side_fd, chunk) :]
            os.fsync(side_fd)
        finally:
            os.close(side_fd)
    except BaseException:
        # A full disk, say: the line stays where it was, and no empty or partial side file is
        # left behind for each rerun to add another.
        side.unlink(missing_ok=True)
        raise
    _fsync_folder(side.parent)
    os.ftruncate(fd, start)
    os.fsync(fd)
    return side


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
