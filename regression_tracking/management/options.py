"""Option types shared by the management commands, and the one translation of bad input.

The types only read what was typed (ASCII digits, a unit, ``K/N``) and what a value can be at all
(an id fits a bigint, a duration fits a datetime). Whether a value is allowed is the service's
rule: it raises ``ValueError``, and ``usage_error`` turns that into the usage error (exit 2) naming
the option. Output paths and database aliases are translated here too.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from regression_tracking.ops.output_files import OutputFile, OutputFileError, check_output_files

DURATION_HELP = "A whole number with a unit: s, m, h or d (e.g. 90s, 90m, 12h, 7d), or 0."
# ASCII digits only: \d would take any script's digits (Arabic-Indic "7d").
_DURATION = re.compile(r"(?P<amount>[0-9]+)(?P<unit>[smhd])")
_INTEGER = re.compile(r"-?[0-9]+")
_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_SHARD = re.compile(r"([0-9]+)/([0-9]+)")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
# Far beyond any sensible grace period, and well inside what datetime arithmetic allows.
MAX_DURATION = timedelta(days=36_500)
# PostgreSQL's bigint: the largest id a row can have.
MAX_ID = 2**63 - 1
# The longest pause between batches.
MAX_SLEEP_SECONDS = 3600
# Exit status of a usage error, as argparse gives it.
EXIT_USAGE = 2

# The cleanup service's parameters, by the options that set them: its ValueError names the first.
SERVICE_OPTIONS = {
    "min_age": "--min-age",
    "batch_size": "--batch-size",
    "max_rows": "--max-rows",
    "max_runtime": "--max-runtime",
    "sleep": "--sleep",
    "shard": "--shard",
}


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


def integer(value: str) -> int:
    """An integer in ASCII digits that fits a bigint; its range is the service's to check."""
    if not _INTEGER.fullmatch(value):
        raise argparse.ArgumentTypeError(f"invalid integer {value!r}")
    number = int(value)
    if abs(number) > MAX_ID:
        raise argparse.ArgumentTypeError(f"{value!r} is too large")
    return number


def _at_least(value: str, minimum: int) -> int:
    number = integer(value)
    if number < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value!r}")
    return number


def id_value(value: str) -> int:
    """A row id (``--project``): 1 to the largest bigint."""
    return _at_least(value, 1)


def at_least_one(value: str) -> int:
    """A count (``--list-limit``): 1 to the largest bigint; its upper bound is the caller's."""
    return _at_least(value, 1)


def id_cursor(value: str) -> int:
    """An id to resume after (``--start-after-id``): 0 to the largest bigint."""
    return _at_least(value, 0)


def seconds(value: str) -> float:
    """A pause in seconds, ASCII digits with an optional decimal part, at most an hour."""
    if not _DECIMAL.fullmatch(value):
        raise argparse.ArgumentTypeError(f"invalid number {value!r}")
    number = float(value)
    if number > MAX_SLEEP_SECONDS:
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_SLEEP_SECONDS} seconds, got {value!r}"
        )
    return number


def parse_shard(value: str) -> tuple[int, int]:
    """``K/N``: this run takes the projects whose id modulo N is K."""
    match = _SHARD.fullmatch(value.strip())
    if not match or len(value) > 20:
        raise argparse.ArgumentTypeError(f"invalid shard {value!r}: expected K/N, e.g. 0/4")
    return int(match[1]), int(match[2])


def usage_error(error: ValueError) -> CommandError:
    """The service's ``ValueError`` for a bad argument as a usage error naming its option."""
    parameter, _space, problem = str(error).partition(" ")
    option = SERVICE_OPTIONS.get(parameter)
    if option is None:
        return CommandError(str(error))
    return CommandError(f"argument {option}: {problem}", returncode=EXIT_USAGE)


def output_files(paths: Mapping[str, str | None]) -> dict[str, OutputFile]:
    """The output paths checked as one set (nothing created); bad ones as a ``CommandError``."""
    try:
        return check_output_files(paths)
    except OutputFileError as error:
        raise CommandError(str(error), returncode=EXIT_USAGE if error.usage else 1) from None


def check_database(alias: str) -> None:
    if alias not in connections.databases:
        known = ", ".join(sorted(connections.databases))
        raise CommandError(f"--database: unknown database alias {alias!r} (known: {known})")


class ExactOptionsCommand(BaseCommand):
    """A command that takes options only as spelled out: argparse would otherwise read an
    abbreviation (``--force`` as Django's ``--force-color``) and run anyway."""

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: object) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.allow_abbrev = False
        return parser
