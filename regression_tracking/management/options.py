"""Option types shared by the management commands, and the one translation of bad input.

The types only read what was typed (ASCII digits, a unit, ``K/N``) and what a value can be at all
(an id fits a bigint, a duration fits a datetime). Whether a value is allowed is the service's
rule: it raises ``CleanupArgumentError`` naming the parameter, and ``usage_error`` turns that into
the usage error (exit 2) naming the option. Output paths and database aliases are translated here
too.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from regression_tracking.durations import parse_duration
from regression_tracking.models import BIGINT_MAX
from regression_tracking.ops.output_files import OutputFile, OutputFileError, check_output_files
from regression_tracking.services import CleanupArgumentError

_INTEGER = re.compile(r"-?[0-9]+")
_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_SHARD = re.compile(r"([0-9]+)/([0-9]+)")
# What argparse may read as a value although it starts with "-": a negative number or duration.
_NEGATIVE_VALUE = re.compile(r"^-[0-9]+[smhd]?$|^-[0-9]*\.[0-9]+$")
# The longest pause between batches.
MAX_SLEEP_SECONDS = 3600
# Exit status of a usage error, as argparse gives it.
EXIT_USAGE = 2

# The cleanup service's parameters, by the options that set them.
SERVICE_OPTIONS = {
    "min_age": "--min-age",
    "batch_size": "--batch-size",
    "batch_time": "--batch-time",
    "max_rows": "--max-rows",
    "max_runtime": "--max-runtime",
    "sleep": "--sleep",
    "max_replication_lag": "--max-replication-lag",
    "shard": "--shard",
}


def duration(value: str) -> timedelta:
    """A duration option (``--min-age``, ``--max-runtime``): see ``durations.parse_duration``."""
    try:
        return parse_duration(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def integer(value: str) -> int:
    """An integer in ASCII digits that fits a bigint; its range is the service's to check."""
    if not _INTEGER.fullmatch(value):
        raise argparse.ArgumentTypeError(f"invalid integer {value!r}")
    number = int(value)
    if abs(number) > BIGINT_MAX:
        raise argparse.ArgumentTypeError(f"{value!r} is too large")
    return number


def whole_number(minimum: int, maximum: int = BIGINT_MAX) -> Callable[[str], int]:
    """The option type of an integer from ``minimum`` to ``maximum`` (a bigint at most)."""

    def parse(value: str) -> int:
        number = integer(value)
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value!r}")
        if number > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {value!r}")
        return number

    return parse


# A row id (--project): 1 to the largest bigint.
id_value = whole_number(1)
# An id to resume after (--start-after-id): 0 to the largest bigint.
id_cursor = whole_number(0)


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


def usage_error(error: CleanupArgumentError) -> CommandError:
    """The service's refusal of an argument as a usage error naming the option that set it."""
    option = SERVICE_OPTIONS.get(error.parameter)
    if option is None:
        return CommandError(str(error))
    return CommandError(f"argument {option}: {error.problem}", returncode=EXIT_USAGE)


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
        # argparse takes "-1d" for an option (it knows only "-1" and "-0.5" as negative numbers)
        # and says "expected one argument": as a value, a negative duration gets its own message.
        parser._negative_number_matcher = _NEGATIVE_VALUE
        return parser
