"""``manage.py load_demo_data``: (re)load the demo organization for a first look at the cleanup."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from regression_tracking.management.options import ExactOptionsCommand, check_database
from regression_tracking.services.demo import DEMO_ORGANIZATION_SLUG, load_demo_data


class Command(ExactOptionsCommand):
    help = (
        f'Replace the "{DEMO_ORGANIZATION_SLUG}" organization with a small dataset holding '
        "linked regressions, each kind of orphan, a too-recent orphan and old inactive versions."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--database",
            default="default",
            help='The database to load into, by its alias in DATABASES. Default: "default".',
        )

    def handle(self, *, database: str, verbosity: int, **options: Any) -> None:
        check_database(database)
        summary = load_demo_data(using=database)
        if verbosity >= 1:
            self.stdout.write(
                f"Loaded the {DEMO_ORGANIZATION_SLUG!r} organization: {summary.projects} "
                f"projects, {summary.regression_groups} regression groups, "
                f"{summary.grouphashes} group hashes."
            )
