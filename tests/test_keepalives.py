"""A silent network cannot hold a session for hours: TCP keepalives on both sides."""

from __future__ import annotations

import pytest
from django.db import connection

from regression_tracking.environment import (
    KEEPALIVE_COUNT,
    KEEPALIVE_IDLE_SECONDS,
    KEEPALIVE_INTERVAL_SECONDS,
    env_database,
)


def test_a_postgresql_url_gets_client_and_server_keepalives() -> None:
    database = env_database(default="postgres://u@db.example:5432/sentry", environ={})

    options = database["OPTIONS"]
    assert options["keepalives"] == 1
    assert options["keepalives_idle"] == KEEPALIVE_IDLE_SECONDS
    assert options["keepalives_interval"] == KEEPALIVE_INTERVAL_SECONDS
    assert options["keepalives_count"] == KEEPALIVE_COUNT
    assert options["options"] == (
        f"-c tcp_keepalives_idle={KEEPALIVE_IDLE_SECONDS}"
        f" -c tcp_keepalives_interval={KEEPALIVE_INTERVAL_SECONDS}"
        f" -c tcp_keepalives_count={KEEPALIVE_COUNT}"
    )


def test_options_in_the_url_win() -> None:
    database = env_database(
        default="postgres://u@db.example:5432/sentry?keepalives_idle=5&options=-c%20x%3D1",
        environ={},
    )

    assert database["OPTIONS"]["keepalives_idle"] == 5
    assert database["OPTIONS"]["options"] == "-c x=1"
    assert database["OPTIONS"]["keepalives_count"] == KEEPALIVE_COUNT


def test_sqlite_gets_no_keepalives() -> None:
    database = env_database(default="sqlite:///db.sqlite3", environ={})

    assert "keepalives" not in database.get("OPTIONS", {})


@pytest.mark.postgresql
@pytest.mark.django_db
def test_the_session_asks_the_server_to_drop_a_vanished_client() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, source FROM pg_settings WHERE name IN"
            " ('tcp_keepalives_idle', 'tcp_keepalives_interval', 'tcp_keepalives_count')"
        )
        sources = dict(cursor.fetchall())
    # "client": set by this session's startup options (on a Unix socket PostgreSQL shows 0 for
    # the value itself, but still records where it came from).
    assert sources == {
        "tcp_keepalives_idle": "client",
        "tcp_keepalives_interval": "client",
        "tcp_keepalives_count": "client",
    }


def test_pgoptions_from_the_environment_are_kept() -> None:
    database = env_database(
        default="postgres://u@db.example:5432/sentry",
        environ={"PGOPTIONS": "-c default_transaction_read_only=on"},
    )

    assert database["OPTIONS"]["options"].startswith("-c default_transaction_read_only=on -c ")
