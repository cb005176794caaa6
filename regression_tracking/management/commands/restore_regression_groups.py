"""``manage.py restore_regression_groups PATH``: re-insert rows saved by ``--backup``."""

from __future__ import annotations

import signal
import threading
from argparse import ArgumentParser
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from django.core.management.base import CommandError
from django.db import DatabaseError

from regression_tracking.cleanup.backup import (
    RestoreConflictError,
    RestoreTimeoutError,
    restore_backup_file,
)
from regression_tracking.management.options import ExactOptionsCommand, check_database
from regression_tracking.management.streams import GuardedOutputCommand
from regression_tracking.services import BackupFormatError, UnknownProjectsError

NOTHING_RESTORED = "nothing was restored"


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: a KeyboardInterrupt, so psycopg cancels the statement it waits on."""


@contextmanager
def _interrupt_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise ``Interrupted``: the transaction rolls back, the run ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Command(GuardedOutputCommand, ExactOptionsCommand):
    help = (
        "Re-insert RegressionGroups from a cleanup_orphaned_regressions --backup file, with their "
        "ids and every column; rows that already exist are skipped. All or nothing."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("path", metavar="PATH", help="The JSON-lines file --backup wrote.")
        parser.add_argument(
            "--skip-missing-projects",
            action="store_true",
            help="Leave out (and count) rows whose project no longer exists, e.g. regression "
            "groups of a deleted project in a Sentry database. Default: refuse the whole file.",
        )
        parser.add_argument(
            "--skip-conflicts",
            action="store_true",
            help="Leave out (and count) rows whose id holds a different regression group, or "
            "whose (type, project, fingerprint, version) was created again since the backup. "
            "Default: refuse the whole file.",
        )
        parser.add_argument(
            "--database",
            default="default",
            help='The database to restore into, by its alias in DATABASES. Default: "default".',
        )

    def handle(
        self,
        *,
        path: str,
        skip_missing_projects: bool,
        skip_conflicts: bool,
        database: str,
        verbosity: int,
        **options: Any,
    ) -> None:
        check_database(database)
        try:
            with _interrupt_on_signals():
                result = restore_backup_file(
                    path,
                    skip_missing_projects=skip_missing_projects,
                    skip_conflicts=skip_conflicts,
                    using=database,
                )
        except Interrupted as error:
            raise CommandError(f"interrupted by {error}: rolled back, {NOTHING_RESTORED}") from None
        except OSError as error:
            raise CommandError(f"cannot read {path}: {error.strerror}") from error
        except BackupFormatError as error:
            raise CommandError(f"{path}: {error}; {NOTHING_RESTORED}") from error
        except UnknownProjectsError as error:
            raise CommandError(
                f"{path}: {error}; {NOTHING_RESTORED} (--skip-missing-projects leaves them out)"
            ) from error
        except RestoreConflictError as error:
            raise CommandError(
                f"{path}: {error}; {NOTHING_RESTORED} (--skip-conflicts leaves them out)"
            ) from error
        except RestoreTimeoutError as error:
            raise CommandError(f"{error}; {NOTHING_RESTORED}") from error
        except DatabaseError as error:
            raise CommandError(
                f"database error: {error}".strip() + f"; {NOTHING_RESTORED}"
            ) from error
        if verbosity >= 1:
            lines = [
                f"restored: {result.restored}",
                f"skipped (already present): {result.skipped_existing}",
            ]
            if skip_missing_projects:
                lines.append(f"skipped (project missing): {result.skipped_missing_project}")
            if skip_conflicts:
                lines.append(f"skipped (conflicts): {result.skipped_conflicts}")
            self.stdout.write("\n".join(lines))
