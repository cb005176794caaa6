"""``manage.py restore_regression_groups PATH``: re-insert rows saved by ``--backup``."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import CommandError
from django.db import DatabaseError

from regression_tracking.management.options import ExactOptionsCommand, check_database
from regression_tracking.services import (
    BackupFormatError,
    UnknownProjectsError,
    decode_lines,
    read_backup,
    restore_regression_groups,
)


class Command(ExactOptionsCommand):
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
            "--database",
            default="default",
            help='The database to restore into, by its alias in DATABASES. Default: "default".',
        )

    def handle(
        self,
        *,
        path: str,
        skip_missing_projects: bool,
        database: str,
        verbosity: int,
        **options: Any,
    ) -> None:
        check_database(database)
        try:
            with open(path, "rb") as backup:
                rows = read_backup(decode_lines(backup))
        except OSError as error:
            raise CommandError(f"cannot read {path}: {error.strerror}") from error
        except BackupFormatError as error:
            raise CommandError(f"{path}: {error}; nothing was restored") from error
        try:
            result = restore_regression_groups(
                rows, skip_missing_projects=skip_missing_projects, using=database
            )
        except UnknownProjectsError as error:
            raise CommandError(
                f"{path}: {error}; nothing was restored (--skip-missing-projects leaves them out)"
            ) from error
        except DatabaseError as error:
            raise CommandError(f"database error: {error}; nothing was restored") from error
        if verbosity >= 1:
            lines = [
                f"restored: {result.restored}",
                f"skipped (already present): {result.skipped_existing}",
            ]
            if skip_missing_projects:
                lines.append(f"skipped (project missing): {result.skipped_missing_project}")
            self.stdout.write("\n".join(lines))
