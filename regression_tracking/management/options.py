"""Option types and checks shared by the management commands: bad input names its option."""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from regression_tracking.models import Project, RegressionGroup
from regression_tracking.services import BackupFormatError, BackupWriter
from regression_tracking.services.locking import MAX_SHARDS

DURATION_HELP = "A whole number with a unit: s, m, h or d (e.g. 90s, 90m, 12h, 7d), or 0."
_DURATION = re.compile(r"(?P<amount>\d+)(?P<unit>[smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
# Far beyond any sensible grace period, and well inside what datetime arithmetic allows.
MAX_DURATION = timedelta(days=36_500)
# PostgreSQL's bigint: the largest id a row can have.
MAX_ID = 2**63 - 1


def parse_duration(value: str) -> timedelta:
    text = value.strip().lower()
    if text == "0":
        return timedelta(0)
    match = _DURATION.fullmatch(text)
    if not match:
        raise argparse.ArgumentTypeError(f"invalid duration {value!r}: {DURATION_HELP}")
    amount = int(match["amount"])
    if amount > MAX_DURATION.total_seconds():
        raise argparse.ArgumentTypeError(f"duration {value!r} is too large")
    duration = timedelta(**{_UNITS[match["unit"]]: amount})
    if duration > MAX_DURATION:
        raise argparse.ArgumentTypeError(f"duration {value!r} is too large (at most 36500d)")
    return duration


def positive_duration(value: str) -> timedelta:
    duration = parse_duration(value)
    if duration <= timedelta(0):
        raise argparse.ArgumentTypeError(f"duration must be more than 0, got {value!r}")
    return duration


def _integer(value: str, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {value!r}") from None
    if number < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value!r}")
    if number > MAX_ID:
        raise argparse.ArgumentTypeError(f"{value!r} is too large")
    return number


def positive_int(value: str) -> int:
    return _integer(value, 1)


def non_negative_int(value: str) -> int:
    return _integer(value, 0)


def non_negative_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {value!r}") from None
    if not 0 <= number <= 3600:
        raise argparse.ArgumentTypeError(f"must be between 0 and 3600 seconds, got {value!r}")
    return number


def parse_shard(value: str) -> tuple[int, int]:
    """``K/N``: this run takes the projects whose id modulo N is K."""
    match = re.fullmatch(r"(\d+)/(\d+)", value.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"invalid shard {value!r}: expected K/N, e.g. 0/4")
    index, count = int(match[1]), int(match[2])
    if not 1 <= count <= MAX_SHARDS or index >= count:
        raise argparse.ArgumentTypeError(
            f"invalid shard {value!r}: need 0 <= K < N <= {MAX_SHARDS}"
        )
    return index, count


def check_writable_file(option: str, path: str | None) -> None:
    """``path`` can be created or replaced: not a directory, in a folder that takes new files.

    Tried with a nameless temporary file there rather than ``os.access``, which says yes to root
    on folders that refuse every new file (``/proc``, a read-only mount).
    """
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise CommandError(f"{option}: {path} is a directory")
    try:
        with tempfile.TemporaryFile(dir=target.parent):
            pass
    except OSError as error:
        raise CommandError(f"{option}: cannot write to {path}: {error.strerror}") from error


def check_database(alias: str) -> None:
    if alias not in connections.databases:
        known = ", ".join(sorted(connections.databases))
        raise CommandError(f"--database: unknown database alias {alias!r} (known: {known})")


def check_projects(project_ids: Sequence[int], database: str) -> None:
    """Each id names a project, or at least regression groups (upstream keeps a bare project_id,
    so a Sentry database can hold regression groups of a deleted project)."""
    found = set(
        Project.objects.using(database).filter(id__in=project_ids).values_list("id", flat=True)
    )
    if unknown := [p for p in project_ids if p not in found]:
        found |= set(
            RegressionGroup.objects.using(database)
            .filter(project_id__in=unknown)
            .values_list("project_id", flat=True)
            .distinct()
        )
    if missing := [p for p in project_ids if p not in found]:
        raise CommandError(
            f"--project: no project and no regression groups with id {', '.join(map(str, missing))}"
        )


class ExactOptionsCommand(BaseCommand):
    """A command that takes options only as spelled out: argparse would otherwise read an
    abbreviation (``--force`` as Django's ``--force-color``) and run anyway."""

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: object) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.allow_abbrev = False
        return parser


def open_backup(path: str | None, *, dry_run: bool) -> BackupWriter | None:
    """The backup file opened for appending; in a dry run only checked, never created."""
    if path is None:
        return None
    target = Path(path)
    if dry_run:
        check_writable_file("--backup", path)
        if target.exists() and not os.access(target, os.W_OK):
            raise CommandError(f"--backup: cannot write to {path}")
        return None
    if target.is_dir():
        raise CommandError(f"--backup: {path} is a directory")
    try:
        return BackupWriter(target)
    except OSError as error:
        raise CommandError(f"--backup: cannot append to {path}: {error.strerror}") from error
    except BackupFormatError as error:
        raise CommandError(f"--backup: {path}: {error}") from error
