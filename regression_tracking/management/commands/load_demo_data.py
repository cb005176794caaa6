"""``manage.py load_demo_data``: load the demo organization for a first look at the cleanup."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import CommandError
from django.db import DatabaseError

from regression_tracking.management.demo_data import (
    DEMO_ORGANIZATION_SLUG,
    DemoRefused,
    load_demo_data,
)
from regression_tracking.management.options import ExactOptionsCommand, check_database
from regression_tracking.management.streams import GuardedOutputCommand


class Command(GuardedOutputCommand, ExactOptionsCommand):
    help = (
        f'Load the "{DEMO_ORGANIZATION_SLUG}" organization, a small dataset holding linked '
        "regressions, each kind of orphan, a too-recent orphan and old inactive versions, into a "
        "database that holds nothing else."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--replace",
            action="store_true",
            help="Load the demo afresh when it is loaded already (only the demo's own "
            "organization is deleted). Default: refuse.",
        )
        parser.add_argument(
            "--database",
            default="default",
            help='The database to load into, by its alias in DATABASES. Default: "default".',
        )

    def handle(self, *, replace: bool, database: str, verbosity: int, **options: Any) -> None:
        check_database(database)
        try:
            summary = load_demo_data(replace=replace, using=database)
        except DemoRefused as error:
            raise CommandError(f"{error}; nothing was changed") from error
        except DatabaseError as error:
            raise CommandError(
                f"database error: {error}".strip() + "; nothing was changed"
            ) from error
        if verbosity >= 1:
            self.stdout.write(
                f"Loaded the {DEMO_ORGANIZATION_SLUG!r} organization: {summary.projects} "
                f"projects, {summary.regression_groups} regression groups, "
                f"{summary.grouphashes} group hashes."
            )
