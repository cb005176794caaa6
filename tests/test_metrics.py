from __future__ import annotations

import errno
import logging
import os
import socket
import stat
import sys
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from regression_tracking.fingerprints import hash_fingerprint
from regression_tracking.models import RegressionGroup
from regression_tracking.ops import metrics
from regression_tracking.ops.output_files import OutputFileError
from regression_tracking.services import (
    NOT_FOUND_METRIC,
    OrphanReason,
    bulk_get_groups_from_fingerprints,
)
from tests.reliability import build_world
from tests.utils import settings_in_subprocess


@pytest.fixture(autouse=True)
def _fresh_process_counts() -> Iterator[None]:
    """Every test starts with no process-wide counts (other tests' lookups add to them)."""
    metrics.reset_process_counts()
    yield
    metrics.reset_process_counts()


@pytest.fixture
def statsd_server() -> Iterator[socket.socket]:
    """A UDP socket on 127.0.0.1 standing in for the statsd server."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(5)
    yield server
    server.close()


@pytest.fixture
def statsd_backend(settings, statsd_server) -> Iterator[metrics.StatsdBackend]:
    settings.REGRESSION_TRACKING_METRICS_BACKEND = "regression_tracking.metrics.StatsdBackend"
    settings.REGRESSION_TRACKING_STATSD_HOST = "127.0.0.1"
    settings.REGRESSION_TRACKING_STATSD_PORT = statsd_server.getsockname()[1]
    settings.REGRESSION_TRACKING_STATSD_PREFIX = "regression_tracking"
    backend = metrics.get_backend()
    assert isinstance(backend, metrics.StatsdBackend)
    yield backend
    backend.close()


@pytest.fixture
def prometheus_backend(settings) -> metrics.PrometheusBackend:
    settings.REGRESSION_TRACKING_METRICS_BACKEND = "regression_tracking.metrics.PrometheusBackend"
    backend = metrics.get_backend()
    assert isinstance(backend, metrics.PrometheusBackend)
    return backend


def received(server: socket.socket) -> bytes:
    datagram, _ = server.recvfrom(65535)
    return datagram


class TestStatsdBackend:
    def test_sends_prefixed_counter(self, statsd_backend, statsd_server) -> None:
        metrics.incr("some.key", amount=3)
        assert received(statsd_server) == b"regression_tracking.some.key:3|c"

    def test_default_amount_is_one(self, statsd_backend, statsd_server) -> None:
        metrics.incr("some.key")
        assert received(statsd_server) == b"regression_tracking.some.key:1|c"

    def test_tags_become_name_segments_sorted_by_tag(self, statsd_backend, statsd_server) -> None:
        metrics.incr("cleanup.orphans", amount=2, tags={"reason": "missing_grouphash", "a": "b"})
        assert received(statsd_server) == (
            b"regression_tracking.cleanup.orphans.a_b.reason_missing_grouphash:2|c"
        )

    def test_unsafe_characters_in_tags_become_underscores(
        self, statsd_backend, statsd_server
    ) -> None:
        metrics.incr("some.key", tags={"region": "eu.west:1|@#x", "a b": "c-d"})
        assert (
            received(statsd_server)
            == b"regression_tracking.some.key.a_b_c-d.region_eu_west_1___x:1|c"
        )

    def test_empty_prefix_sends_bare_key(self, settings, statsd_backend, statsd_server) -> None:
        settings.REGRESSION_TRACKING_STATSD_PREFIX = ""
        backend = metrics.get_backend()
        assert backend is not statsd_backend
        try:
            metrics.incr("some.key")
        finally:
            assert isinstance(backend, metrics.StatsdBackend)
            backend.close()
        assert received(statsd_server) == b"some.key:1|c"

    def test_lookup_counts_missing_pairs(self, statsd_backend, statsd_server, db) -> None:
        bulk_get_groups_from_fingerprints(
            [(1, hash_fingerprint(["gone"])), (2, hash_fingerprint(["also gone"]))]
        )
        assert received(statsd_server) == f"regression_tracking.{NOT_FOUND_METRIC}:2|c".encode()

    def test_unreachable_server_never_raises(self, settings, statsd_server) -> None:
        port = statsd_server.getsockname()[1]
        statsd_server.close()
        settings.REGRESSION_TRACKING_METRICS_BACKEND = "regression_tracking.metrics.StatsdBackend"
        settings.REGRESSION_TRACKING_STATSD_PORT = port
        backend = metrics.get_backend()
        assert isinstance(backend, metrics.StatsdBackend)
        try:
            for _ in range(3):
                metrics.incr("some.key")
        finally:
            backend.close()


class TestPrometheusBackend:
    def test_textfile_has_sanitized_counter_with_tags_as_labels(
        self, prometheus_backend, tmp_path
    ) -> None:
        tags = {"reason": str(OrphanReason.MISSING_GROUPHASH)}
        metrics.incr(NOT_FOUND_METRIC, tags=tags)
        metrics.incr(NOT_FOUND_METRIC, tags=tags)
        path = tmp_path / "regression_tracking.prom"

        metrics.write_textfile(path)

        name = "regression_tracking_occurrence_ingest_grouphash_not_found_total"
        assert path.read_text() == (
            f"# HELP {name} occurrence_ingest.grouphash.not_found\n"
            f"# TYPE {name} counter\n"
            f'{name}{{reason="missing_grouphash"}} 2.0\n'
        )

    def test_one_key_with_different_tags_is_one_family(self, prometheus_backend, tmp_path) -> None:
        metrics.incr("cleanup.rows", amount=5, tags={"action": "delete"})
        metrics.incr("cleanup.rows", amount=1)
        metrics.incr("cleanup.rows", amount=2, tags={"action": "deactivate", "reason": "x"})
        path = tmp_path / "out.prom"

        metrics.write_textfile(str(path))

        assert path.read_text().splitlines() == [
            "# HELP regression_tracking_cleanup_rows_total cleanup.rows",
            "# TYPE regression_tracking_cleanup_rows_total counter",
            "regression_tracking_cleanup_rows_total 1.0",
            'regression_tracking_cleanup_rows_total{action="deactivate",reason="x"} 2.0',
            'regression_tracking_cleanup_rows_total{action="delete"} 5.0',
        ]

    def test_names_and_labels_are_sanitized(self, prometheus_backend, tmp_path) -> None:
        metrics.incr("a-b.c d", tags={"tag.name": 'say "hi"\n', "1st": "x", "__x": "y"})
        path = tmp_path / "out.prom"

        metrics.write_textfile(path)

        assert path.read_text().splitlines()[2] == (
            "regression_tracking_a_b_c_d_total"
            '{tag_1st="x",tag___x="y",tag_name="say \\"hi\\"\\n"} 1.0'
        )

    def test_each_backend_has_its_own_registry(self, prometheus_backend) -> None:
        metrics.incr("some.key")
        other = metrics.PrometheusBackend()
        assert other.registry is not prometheus_backend.registry
        assert other.registry.get_sample_value("regression_tracking_some_key_total") is None
        assert (
            prometheus_backend.registry.get_sample_value("regression_tracking_some_key_total")
            == 1.0
        )

    def test_no_created_samples(self, prometheus_backend, tmp_path) -> None:
        metrics.incr("some.key")
        path = tmp_path / "out.prom"
        metrics.write_textfile(path)
        assert "_created" not in path.read_text()


class TestWriteTextfile:
    def test_without_prometheus_backend_writes_the_process_counts(
        self, metrics_backend, tmp_path
    ) -> None:
        metrics.incr("some.key", amount=4, tags={"reason": "r"})
        path = tmp_path / "out.prom"

        metrics.write_textfile(path)

        assert metrics_backend.total("some.key") == 4
        assert path.read_text() == (
            "# HELP regression_tracking_some_key_total some.key\n"
            "# TYPE regression_tracking_some_key_total counter\n"
            'regression_tracking_some_key_total{reason="r"} 4.0\n'
        )

    def test_with_noop_backend_writes_the_process_counts(self, settings, tmp_path) -> None:
        settings.REGRESSION_TRACKING_METRICS_BACKEND = "regression_tracking.metrics.NoopBackend"
        metrics.incr("some.key")
        path = tmp_path / "out.prom"

        metrics.write_textfile(path)

        assert path.read_text().splitlines()[-1] == "regression_tracking_some_key_total 1.0"

    def test_with_prometheus_backend_writes_its_registry(self, settings, tmp_path) -> None:
        settings.REGRESSION_TRACKING_METRICS_BACKEND = "regression_tracking.metrics.NoopBackend"
        metrics.incr("before.switch")
        settings.REGRESSION_TRACKING_METRICS_BACKEND = (
            "regression_tracking.metrics.PrometheusBackend"
        )
        metrics.incr("after.switch")
        path = tmp_path / "out.prom"

        metrics.write_textfile(path)

        assert path.read_text().splitlines()[-1] == "regression_tracking_after_switch_total 1.0"
        assert "before" not in path.read_text()

    def test_nothing_counted_writes_an_empty_file(self, tmp_path) -> None:
        path = tmp_path / "out.prom"
        metrics.write_textfile(path)
        assert path.read_text() == ""

    def test_replaces_the_file_and_leaves_no_temporary_file(self, tmp_path) -> None:
        path = tmp_path / "out.prom"
        path.write_text("stale\n")
        metrics.incr("some.key")

        metrics.write_textfile(path)

        assert "stale" not in path.read_text()
        assert [p.name for p in tmp_path.iterdir()] == ["out.prom"]


class TestSettings:
    def test_statsd_defaults(self) -> None:
        result = settings_in_subprocess(
            "from django.conf import settings as s\n"
            "print(s.REGRESSION_TRACKING_STATSD_HOST, s.REGRESSION_TRACKING_STATSD_PORT,"
            " s.REGRESSION_TRACKING_STATSD_PREFIX, s.REGRESSION_TRACKING_METRICS_BACKEND)"
        )
        assert result.stdout == (
            "127.0.0.1 8125 regression_tracking regression_tracking.metrics.NoopBackend\n"
        )

    def test_statsd_settings_come_from_the_environment(self) -> None:
        result = settings_in_subprocess(
            "from django.conf import settings as s\n"
            "print(s.REGRESSION_TRACKING_STATSD_HOST, s.REGRESSION_TRACKING_STATSD_PORT,"
            " repr(s.REGRESSION_TRACKING_STATSD_PREFIX))",
            REGRESSION_TRACKING_STATSD_HOST="statsd.internal",
            REGRESSION_TRACKING_STATSD_PORT="9125",
            REGRESSION_TRACKING_STATSD_PREFIX="",
        )
        assert result.stdout == "statsd.internal 9125 ''\n"

    def test_bad_statsd_port_is_a_clear_error(self) -> None:
        result = settings_in_subprocess("", REGRESSION_TRACKING_STATSD_PORT="eighty")
        assert result.returncode != 0
        assert result.stderr.splitlines()[-1] == (
            "regression_tracking.environment.ConfigurationError: "
            "REGRESSION_TRACKING_STATSD_PORT must be a port number (1..65535), not 'eighty'"
        )


@pytest.fixture
def fresh_warnings() -> Iterator[None]:
    """Each test sees the once-per-process warnings afresh."""
    metrics._warned.clear()
    yield
    metrics._warned.clear()


def _metric_warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "regression_tracking.metrics"]


class TestMetricsNeverTakeTheJobDown:
    """An unresolvable statsd host was a traceback, after detection or in a lookup."""

    @pytest.mark.parametrize(
        "host", ["statsd.invalid", "::1", "", "bad host name", "\u00e9.invalid"]
    )
    def test_statsd_host_that_cannot_be_used_never_raises_and_warns_once(
        self, settings, caplog, fresh_warnings, host
    ) -> None:
        caplog.set_level(logging.WARNING, logger="regression_tracking.metrics")
        settings.REGRESSION_TRACKING_METRICS_BACKEND = "regression_tracking.metrics.StatsdBackend"
        settings.REGRESSION_TRACKING_STATSD_HOST = host
        backend = metrics.get_backend()
        assert isinstance(backend, metrics.StatsdBackend)
        for _ in range(3):
            metrics.incr("some.key", amount=2, tags={"reason": "x"})
        warnings = _metric_warnings(caplog)
        assert len(warnings) <= 1
        if backend.client is None:
            assert [w.getMessage() for w in warnings] == [
                "regression_tracking.metrics.statsd_unavailable"
            ]
            assert warnings[0].__dict__["host"] == host
        backend.close()

    def test_lookup_with_an_unresolvable_statsd_host_returns_its_answer(
        self, settings, caplog, fresh_warnings, db
    ) -> None:
        caplog.set_level(logging.WARNING, logger="regression_tracking")
        settings.REGRESSION_TRACKING_METRICS_BACKEND = "regression_tracking.metrics.StatsdBackend"
        settings.REGRESSION_TRACKING_STATSD_HOST = "statsd.invalid"
        assert bulk_get_groups_from_fingerprints([(1, hash_fingerprint(["a"]))]) == {}
        assert bulk_get_groups_from_fingerprints([(2, hash_fingerprint(["b"]))]) == {}
        assert [w.getMessage() for w in _metric_warnings(caplog)] == [
            "regression_tracking.metrics.statsd_unavailable"
        ]

    def test_any_backend_error_is_logged_once_and_the_count_kept_for_the_textfile(
        self, settings, caplog, fresh_warnings, tmp_path
    ) -> None:
        caplog.set_level(logging.WARNING, logger="regression_tracking.metrics")
        settings.REGRESSION_TRACKING_METRICS_BACKEND = "tests.test_metrics.BrokenBackend"
        for _ in range(3):
            metrics.incr("some.key")
        (warning,) = _metric_warnings(caplog)
        assert warning.getMessage() == "regression_tracking.metrics.backend_failed"
        assert warning.__dict__["error"] == "OSError: [Errno 101] Network is unreachable"
        path = tmp_path / "m.prom"
        metrics.write_textfile(path)
        assert "regression_tracking_some_key_total 3.0" in path.read_text()

    def test_the_cleanup_finishes_with_an_unresolvable_statsd_host(
        self, settings, caplog, fresh_warnings, db
    ) -> None:
        caplog.set_level(logging.WARNING, logger="regression_tracking")
        settings.REGRESSION_TRACKING_METRICS_BACKEND = "regression_tracking.metrics.StatsdBackend"
        settings.REGRESSION_TRACKING_STATSD_HOST = "statsd.invalid"
        build_world(orphans=3, projects=1)
        out = StringIO()
        call_command("cleanup_orphaned_regressions", stdout=out)
        assert "deleted: 3\n" in out.getvalue()
        assert len(_metric_warnings(caplog)) == 1


class BrokenBackend:
    def incr(self, key: str, amount: int, tags: metrics.Tags | None) -> None:
        raise OSError(errno.ENETUNREACH, os.strerror(errno.ENETUNREACH))


class TestTextfileTargets:
    def test_a_symlink_is_followed_and_kept(self, tmp_path) -> None:
        target = tmp_path / "real.prom"
        link = tmp_path / "link.prom"
        link.symlink_to(target)
        metrics.incr("some.key")
        metrics.write_textfile(link)
        assert link.is_symlink()
        assert "regression_tracking_some_key_total 1.0" in target.read_text()

    @pytest.mark.parametrize("kind", ["fifo", "dev-null", "directory", "link-to-dev-null"])
    def test_a_file_that_is_not_regular_is_never_replaced(self, tmp_path, kind) -> None:
        path = tmp_path / kind
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "directory":
            path.mkdir()
        elif kind == "link-to-dev-null":
            path.symlink_to("/dev/null")
        else:
            path = Path("/dev/null")
        mode = os.stat(path).st_mode
        with pytest.raises(OutputFileError, match=" is a "):
            metrics.write_textfile(path)
        assert os.stat(path).st_mode == mode
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


class TestTextfileNeedsPrometheus:
    @pytest.mark.django_db
    def test_refused_before_any_work_without_the_extra(self, monkeypatch, tmp_path) -> None:
        # A None entry in sys.modules makes the import fail, as when the extra is not installed.
        monkeypatch.setitem(sys.modules, "prometheus_client", None)
        build_world(orphans=2, linked=1, projects=1)
        path = tmp_path / "cleanup.prom"
        with pytest.raises(CommandError) as raised:
            call_command(
                "cleanup_orphaned_regressions", "--metrics-textfile", str(path), stdout=StringIO()
            )
        assert str(raised.value) == (
            "--metrics-textfile: prometheus_client is not installed: "
            "pip install 'regression-tracking[prometheus]'"
        )
        assert not path.exists()
        assert RegressionGroup.objects.count() == 3
