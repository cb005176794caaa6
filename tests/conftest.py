from __future__ import annotations

import pytest
from django.db import connection


@pytest.fixture(autouse=True)
def _postgresql_marker_needs_postgresql(request: pytest.FixtureRequest) -> None:
    """A test marked postgresql fails (never skips) on another database."""
    if request.node.get_closest_marker("postgresql") and connection.vendor != "postgresql":
        pytest.fail(
            f"{request.node.nodeid} needs PostgreSQL but DATABASE_URL points at "
            f"{connection.vendor}; the test command deselects it on SQLite"
        )
