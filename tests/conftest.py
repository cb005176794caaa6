from __future__ import annotations

import os
import sys
from typing import Any

import pytest
from django.db import connection, connections
from hypothesis import settings as hypothesis_settings

from regression_tracking.management.commands.cleanup_orphaned_regressions import (
    Command as CleanupCommand,
)
from regression_tracking.ops.metrics import InMemoryBackend, get_backend
from tests.factories import OrphanWorld, create_orphan_world

# Property tests draw the same examples on every run, so a CI run never fails by chance; set
# HYPOTHESIS_PROFILE=explore to draw new ones locally.
hypothesis_settings.register_profile("repeatable", derandomize=True)
hypothesis_settings.register_profile("explore", derandomize=False)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(autouse=True)
def _postgresql_marker_needs_postgresql(request: pytest.FixtureRequest) -> None:
    """A test marked postgresql fails (never skips) on another database."""
    if request.node.get_closest_marker("postgresql") and connection.vendor != "postgresql":
        pytest.fail(
            f"{request.node.nodeid} needs PostgreSQL but DATABASE_URL points at "
            f"{connection.vendor}; the test command deselects it on SQLite"
        )


@pytest.fixture
def metrics_backend(settings: Any) -> InMemoryBackend:
    """Route regression_tracking.ops.metrics to a fresh in-memory backend and return it."""
    settings.REGRESSION_TRACKING_METRICS_BACKEND = "regression_tracking.metrics.InMemoryBackend"
    backend = get_backend()
    assert isinstance(backend, InMemoryBackend)
    return backend


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The figures the reliability suite recorded (tests/reliability.py), for the README."""
    reliability = sys.modules.get("tests.reliability")
    if reliability is None or not reliability.FIGURES:
        return
    terminalreporter.section("reliability figures")
    for test, figures in reliability.FIGURES.items():
        terminalreporter.write_line(
            f"{test}: " + ", ".join(f"{name}={value}" for name, value in figures.items())
        )


@pytest.fixture
def world(db: None) -> OrphanWorld:
    """A linked regression, an old active, an old inactive, a discarded and a recent orphan."""
    return create_orphan_world()


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run cleanup_orphaned_regressions as a shell would; returns (exit status, stdout, stderr)."""
    # run_from_argv closes the connections at the end, as a process exit would; the test's own
    # connection (inside its transaction) must stay open.
    monkeypatch.setattr(connections, "close_all", lambda: None)

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            CleanupCommand().run_from_argv(
                ["manage.py", "cleanup_orphaned_regressions", "--skip-checks", *argv]
            )
            code = 0
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
