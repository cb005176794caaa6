"""Counters, sent to the backend that ``settings.REGRESSION_TRACKING_METRICS_BACKEND`` names.

Call sites use ``incr(key, amount=…, tags=…)`` as they would Sentry's ``sentry.utils.metrics``. The
default backend records nothing; ``InMemoryBackend`` keeps counts for tests and reports;
``StatsdBackend`` sends UDP datagrams; ``PrometheusBackend`` keeps counters in its own registry.
Whatever the backend, every count of the process is also kept for ``write_textfile``.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from regression_tracking.environment import ConfigurationError

# statsd and prometheus-client are optional extras, imported only when configured or used.
if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric


def write_to_textfile(path: str, registry: CollectorRegistry) -> None:
    """prometheus-client's ``write_to_textfile``, imported when a textfile is written."""
    write = _import_extra("prometheus_client", "write_to_textfile", "prometheus")
    write(path, registry)


Tags = Mapping[str, str]

# Prometheus metric names start with this, so the textfile collector's merged output stays apart.
PROMETHEUS_NAMESPACE = "regression_tracking"

# Settings that shape the backend; changing any of them (as tests do) rebuilds it.
_BACKEND_SETTINGS = frozenset(
    {
        "REGRESSION_TRACKING_METRICS_BACKEND",
        "REGRESSION_TRACKING_STATSD_HOST",
        "REGRESSION_TRACKING_STATSD_PORT",
        "REGRESSION_TRACKING_STATSD_PREFIX",
    }
)

_STATSD_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_PROMETHEUS_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


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


def statsd_name(key: str, tags: Tags | None) -> str:
    """``key`` followed by ``.tag_value`` per tag, sorted by tag name.

    Plain statsd has no tags, and dropping them would merge e.g. the orphan reasons into one
    counter. In tag names and values anything but letters, digits, ``_`` and ``-`` becomes ``_``,
    so a tag adds exactly one path segment and never breaks the line protocol.
    """
    segments = [
        f"{_STATSD_UNSAFE.sub('_', str(name))}_{_STATSD_UNSAFE.sub('_', str(value))}"
        for name, value in sorted((tags or {}).items())
    ]
    return ".".join([key, *segments])


class StatsdBackend:
    """Sends ``<prefix>.<key>[.<tag>_<value>…]:<amount>|c`` over UDP to the configured statsd.

    Host, port and prefix come from ``REGRESSION_TRACKING_STATSD_HOST``/``_PORT``/``_PREFIX``; an
    empty prefix sends bare keys; a host with a colon is IPv6. Sending is fire-and-forget: an
    unreachable server loses counts, and a host that does not resolve (or an address family the
    machine lacks) is logged once and looked up again at most every ``RETRY_SECONDS``: neither the
    constructor nor ``incr`` raises.
    """

    RETRY_SECONDS = 60.0

    def __init__(self) -> None:
        self.host: str = settings.REGRESSION_TRACKING_STATSD_HOST
        self.port: int = settings.REGRESSION_TRACKING_STATSD_PORT
        self.prefix: str | None = settings.REGRESSION_TRACKING_STATSD_PREFIX or None
        self.client: Any = None
        self._retry_at = 0.0
        self._connect()

    def _connect(self) -> Any:
        if self.client is None and time.monotonic() >= self._retry_at:
            try:
                stats_client = _import_extra("statsd", "StatsClient", "statsd")
                self.client = stats_client(
                    host=self.host, port=self.port, prefix=self.prefix, ipv6=":" in self.host
                )
            except (OSError, UnicodeError, ValueError, OverflowError) as error:
                self._retry_at = time.monotonic() + self.RETRY_SECONDS
                _warn_once(
                    "regression_tracking.metrics.statsd_unavailable",
                    error,
                    host=self.host,
                    port=self.port,
                )
        return self.client

    def incr(self, key: str, amount: int, tags: Tags | None) -> None:
        client = self._connect()
        if client is not None:
            client.incr(statsd_name(key, tags), amount)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


# Warnings already logged by this process: a broken backend is said once, not once per count.
_warned: set[str] = set()


def _warn_once(message: str, error: BaseException, **context: object) -> None:
    if message in _warned:
        return
    _warned.add(message)
    logging.getLogger("regression_tracking.metrics").warning(
        message, extra={**context, "error": f"{type(error).__name__}: {error}"}
    )


def prometheus_name(key: str) -> str:
    """The Prometheus family name of ``key``, without ``_total``: namespaced, unsafe chars ``_``.

    A key already under the namespace (``regression_tracking.orphans.deleted``) is not prefixed
    twice.
    """
    name = _PROMETHEUS_UNSAFE.sub("_", key)
    if name.startswith(f"{PROMETHEUS_NAMESPACE}_"):
        return name
    return f"{PROMETHEUS_NAMESPACE}_{name}"


def _prometheus_label(name: str) -> str:
    label = _PROMETHEUS_UNSAFE.sub("_", str(name))
    # Label names may not start with a digit, and names starting "__" are reserved.
    return f"tag_{label}" if label[:1].isdigit() or label.startswith("__") or not label else label


class _CounterCollector:
    """Sums per (family, labels) and exposes them as counters, with no ``_created`` samples."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        # The first key seen per family, shown as its HELP so operators can find the call site.
        self._help: dict[str, str] = {}

    def incr(self, key: str, amount: int, tags: Tags | None) -> None:
        family = prometheus_name(key)
        labels = tuple(sorted((_prometheus_label(k), str(v)) for k, v in (tags or {}).items()))
        with self._lock:
            self._help.setdefault(family, key)
            self._counts[(family, labels)] = self._counts.get((family, labels), 0.0) + amount

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily

        with self._lock:
            counts = sorted(self._counts.items())
            helps = dict(self._help)
        families: dict[str, CounterMetricFamily] = {}
        for (family, labels), value in counts:
            metric = families.get(family)
            if metric is None:
                metric = families[family] = CounterMetricFamily(family, helps[family])
            # add_sample, not add_metric: one key may be counted with different sets of tags.
            metric.add_sample(f"{metric.name}_total", dict(labels), value)
        yield from families.values()

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._help.clear()


class PrometheusBackend:
    """Counters in a registry of their own: key ``a.b`` becomes ``<namespace>_a_b_total{tags…}``."""

    def __init__(self) -> None:
        self._collector = _CounterCollector()
        self._registry: CollectorRegistry | None = None

    @property
    def registry(self) -> CollectorRegistry:
        """The registry holding the counters; prometheus-client is imported on first use."""
        if self._registry is None:
            registry_class = _import_extra("prometheus_client", "CollectorRegistry", "prometheus")
            self._registry = registry_class(auto_describe=False)
            self._registry.register(self._collector)
        return self._registry

    def incr(self, key: str, amount: int, tags: Tags | None) -> None:
        self._collector.incr(key, amount, tags)

    def reset(self) -> None:
        self._collector.reset()


# Every count of this process, whatever the backend: what write_textfile writes without Prometheus.
_process_counts = PrometheusBackend()


def _import_extra(module: str, name: str, extra: str) -> Any:
    """``module.name``, or a ``ConfigurationError`` saying which extra installs it."""
    try:
        return import_string(f"{module}.{name}")
    except ImportError:
        raise ConfigurationError(
            f"{module} is not installed: pip install 'regression-tracking[{extra}]'"
        ) from None


# The optional package each of this module's backends needs, by class name.
_BACKEND_EXTRAS = {
    "StatsdBackend": ("statsd", "StatsClient", "statsd"),
    "PrometheusBackend": ("prometheus_client", "CollectorRegistry", "prometheus"),
}


def _backend_class() -> type[MetricsBackend]:
    """The class REGRESSION_TRACKING_METRICS_BACKEND names, or a one-line ConfigurationError."""
    path = settings.REGRESSION_TRACKING_METRICS_BACKEND
    try:
        backend_class = import_string(path)
    except ImportError:
        raise ConfigurationError(
            f"REGRESSION_TRACKING_METRICS_BACKEND {path!r} is not an importable dotted path to a "
            "class (e.g. regression_tracking.metrics.StatsdBackend)"
        ) from None
    if not isinstance(backend_class, type) or not callable(getattr(backend_class, "incr", None)):
        raise ConfigurationError(
            f"REGRESSION_TRACKING_METRICS_BACKEND {path!r} is not a metrics backend: a class "
            "with an incr(key, amount, tags) method"
        )
    extra = _BACKEND_EXTRAS.get(backend_class.__name__)
    if extra is not None and backend_class.__module__ == __name__:
        _import_extra(*extra)
    return backend_class


def check_configuration() -> None:
    """Raise ``ConfigurationError`` when the metrics settings name no usable backend.

    The entry points call it at start, so a bad setting is one line before any work, not an
    error after detection. It builds nothing: no socket is opened.
    """
    _backend_class()


def check_textfile_support() -> None:
    """Raise ``ConfigurationError`` when the textfile cannot be written (prometheus-client is
    the ``prometheus`` extra), so ``--metrics-textfile`` is refused before any work."""
    _import_extra("prometheus_client", "write_to_textfile", "prometheus")


@cache
def get_backend() -> MetricsBackend:
    """The configured backend, built once per process (and again when the setting changes)."""
    backend: MetricsBackend = _backend_class()()
    return backend


@receiver(setting_changed)
def _reset_backend(*, setting: str, **kwargs: object) -> None:
    if setting in _BACKEND_SETTINGS:
        get_backend.cache_clear()


def incr(key: str, amount: int = 1, tags: Tags | None = None) -> None:
    """Add ``amount`` to the counter ``key``."""
    _process_counts.incr(key, amount, tags)
    try:
        get_backend().incr(key, amount, tags)
    except Exception as error:
        # Metrics never take the job down: the count is lost, said once, and the caller goes on.
        _warn_once("regression_tracking.metrics.backend_failed", error, key=key)


def reset_process_counts() -> None:
    """Forget the counts recorded so far, so a textfile holds only what follows (one run)."""
    _process_counts.reset()
    backend = get_backend()
    if isinstance(backend, PrometheusBackend):
        backend.reset()


def write_textfile(path: str | os.PathLike[str]) -> None:
    """Write the counters in node_exporter's textfile format, atomically (temp file, rename).

    The registry of the configured backend when it is a ``PrometheusBackend``, else every count
    this process recorded. node_exporter reads only files whose name ends in ``.prom``. A symlink
    is followed: its target is replaced, beside which the temporary file is written. Anything
    but a regular file there (``/dev/null``, a FIFO, a directory) is never replaced:
    ``OutputFileError``.
    """
    from regression_tracking.ops.output_files import check_output_file

    target = check_output_file(path).target
    backend = get_backend()
    counts = backend if isinstance(backend, PrometheusBackend) else _process_counts
    write_to_textfile(os.fspath(target), counts.registry)
