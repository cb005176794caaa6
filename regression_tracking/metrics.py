"""Counters, sent to the backend that ``settings.REGRESSION_TRACKING_METRICS_BACKEND`` names.

Call sites use ``incr(key, amount=…, tags=…)`` as they would Sentry's ``sentry.utils.metrics``. The
default backend records nothing; ``InMemoryBackend`` keeps counts for tests and reports.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from functools import cache
from typing import Protocol

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

Tags = Mapping[str, str]


class MetricsBackend(Protocol):
    def incr(self, key: str, amount: int, tags: Tags | None) -> None: ...


class NoopBackend:
    """Records nothing (the default)."""

    def incr(self, key: str, amount: int, tags: Tags | None) -> None:
        return None


class InMemoryBackend:
    """Keeps every count in memory, keyed by (key, sorted tags), and every call in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
        self.calls: list[tuple[str, int, dict[str, str] | None]] = []

    def incr(self, key: str, amount: int, tags: Tags | None) -> None:
        frozen_tags = tuple(sorted((tags or {}).items()))
        with self._lock:
            self.counts[(key, frozen_tags)] += amount
            self.calls.append((key, amount, dict(tags) if tags is not None else None))

    def total(self, key: str, **tags: str) -> int:
        """The sum of ``key`` over every call whose tags include ``tags``."""
        return sum(
            amount
            for (counted_key, counted_tags), amount in self.counts.items()
            if counted_key == key and set(tags.items()) <= set(counted_tags)
        )

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.calls.clear()


@cache
def get_backend() -> MetricsBackend:
    """The configured backend, built once per process (and again when the setting changes)."""
    backend_class = import_string(settings.REGRESSION_TRACKING_METRICS_BACKEND)
    backend: MetricsBackend = backend_class()
    return backend


@receiver(setting_changed)
def _reset_backend(*, setting: str, **kwargs: object) -> None:
    if setting == "REGRESSION_TRACKING_METRICS_BACKEND":
        get_backend.cache_clear()


def incr(key: str, amount: int = 1, tags: Tags | None = None) -> None:
    """Add ``amount`` to the counter ``key``."""
    get_backend().incr(key, amount, tags)
