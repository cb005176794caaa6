"""Durations as people type them (``0``, ``90s``, ``12h``, ``7d``) and as they are shown."""

from __future__ import annotations

import re
from datetime import timedelta

# The units, largest first, in seconds: the one table parsing and both spellings use.
UNITS = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
DURATION_HELP = "A whole number with a unit: s, m, h or d (e.g. 90s, 90m, 12h, 7d), or 0."
# Far beyond any sensible grace period, and well inside what datetime arithmetic allows.
MAX_DURATION = timedelta(days=36_500)
# ASCII digits only: \d would take any script's digits (Arabic-Indic "7d").
_DURATION = re.compile(r"(?P<amount>[0-9]+)(?P<unit>[smhd])")


def parse_duration(value: str) -> timedelta:
    """``0`` or a whole number with one unit; ``ValueError`` saying what is wrong otherwise."""
    text = value.strip().lower()
    if text == "0":
        return timedelta(0)
    match = _DURATION.fullmatch(text)
    if not match:
        raise ValueError(f"invalid duration {value!r}: {DURATION_HELP}")
    amount = int(match["amount"])
    if amount > MAX_DURATION.total_seconds():
        raise ValueError(f"duration {value!r} is too large")
    duration = timedelta(seconds=amount * dict(UNITS)[match["unit"]])
    if duration > MAX_DURATION:
        raise ValueError(
            f"duration {value!r} is too large (at most {format_duration(MAX_DURATION)})"
        )
    return duration


def format_duration(duration: timedelta) -> str:
    """A whole-unit spelling parse_duration accepts (``7d``, ``24h``, ``90m``, ``0s``)."""
    seconds = int(duration.total_seconds())
    for unit, size in UNITS[:-1]:
        # Days only from two on: "24h" reads better than "1d".
        if seconds and seconds % size == 0 and (unit != "d" or seconds >= 2 * size):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def format_age(age: timedelta) -> str:
    """An age as its two largest units: ``3d 4h``, ``5h 0m``, ``12m 5s``, ``40s``."""
    seconds = max(int(age.total_seconds()), 0)
    for index, (unit, size) in enumerate(UNITS[:-1]):
        if seconds >= size:
            smaller_unit, smaller_size = UNITS[index + 1]
            return f"{seconds // size}{unit} {seconds % size // smaller_size}{smaller_unit}"
    return f"{seconds}s"
