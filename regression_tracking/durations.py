"""Durations as people type them: ``0``, ``90s``, ``90m``, ``12h``, ``7d``."""

from __future__ import annotations

from datetime import timedelta


def format_duration(duration: timedelta) -> str:
    """A whole-unit spelling parse_duration accepts (``7d``, ``24h``, ``90m``, ``0s``)."""
    seconds = int(duration.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        # Days only from two on: "24h" reads better than "1d".
        if seconds and seconds % size == 0 and (unit != "d" or seconds >= 2 * size):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
