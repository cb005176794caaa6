"""Backups of RegressionGroup rows as JSON lines, and restoring them.

Each line is one row: every column of ``sentry_regressiongroup`` by name, datetimes as ISO-8601.
The cleanup appends the rows of a batch, flushed and fsynced, before that batch commits.
"""

from __future__ import annotations

from regression_tracking.cleanup.backup.restore import (
    RESTORE_CHUNK_SIZE,
    RESTORE_LOCK_TIMEOUT,
    RESTORE_STATEMENT_TIMEOUT,
    RestoreConflictError,
    RestoreResult,
    RestoreTimeoutError,
    UnknownProjectsError,
    restore_backup_file,
    restore_regression_groups,
)
from regression_tracking.cleanup.backup.rows import (
    MAX_LINE_BYTES,
    BackupFormatError,
    is_backup_row,
    parse_row,
    read_backup,
    row_to_dict,
)
from regression_tracking.cleanup.backup.writer import (
    BackupRefusedError,
    BackupWriteError,
    BackupWriter,
)

__all__ = [
    "MAX_LINE_BYTES",
    "RESTORE_CHUNK_SIZE",
    "RESTORE_LOCK_TIMEOUT",
    "RESTORE_STATEMENT_TIMEOUT",
    "BackupFormatError",
    "BackupRefusedError",
    "BackupWriteError",
    "BackupWriter",
    "RestoreConflictError",
    "RestoreResult",
    "RestoreTimeoutError",
    "UnknownProjectsError",
    "is_backup_row",
    "parse_row",
    "read_backup",
    "restore_backup_file",
    "restore_regression_groups",
    "row_to_dict",
]
