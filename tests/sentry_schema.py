"""Helpers to build upstream Sentry's schema (tests/sql/sentry_schema.sql) in PostgreSQL."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg import sql

# The DDL shipped with the repository; SENTRY_SCHEMA_SQL may name another (e.g. a dump of yours).
SHIPPED_SENTRY_SCHEMA_SQL = Path(__file__).resolve().parent / "sql" / "sentry_schema.sql"
SENTRY_SCHEMA_SQL = Path(os.environ.get("SENTRY_SCHEMA_SQL") or SHIPPED_SENTRY_SCHEMA_SQL)


def load_sentry_schema(connection: BaseDatabaseWrapper, schema: str) -> None:
    """Create ``schema`` holding Sentry's five tables, and put it first on the search path.

    Runs in the caller's transaction; ``SET LOCAL`` keeps the search path to that transaction.
    """
    ddl = SENTRY_SCHEMA_SQL.read_text()
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {connection.ops.quote_name(schema)}")
        cursor.execute(f"SET LOCAL search_path TO {connection.ops.quote_name(schema)}")
        cursor.execute(ddl)


# Sentry's five tables, as named in SENTRY_SCHEMA_SQL.
SENTRY_TABLES = frozenset(
    {
        "sentry_organization",
        "sentry_project",
        "sentry_groupedmessage",
        "sentry_grouphash",
        "sentry_regressiongroup",
    }
)


def _connect_kwargs(settings: dict[str, Any], dbname: str) -> dict[str, Any]:
    options = {
        "host": settings["HOST"] or None,
        "port": settings["PORT"] or None,
        "user": settings["USER"] or None,
        "password": settings["PASSWORD"] or None,
        "dbname": dbname,
    }
    return {key: value for key, value in options.items() if value is not None}


def _server_connection(settings: dict[str, Any]) -> psycopg.Connection[Any]:
    """An autocommit connection to the server of ``settings``, as Django makes one for test set-up.

    The ``postgres`` maintenance database first, else the configured database.
    """
    try:
        return psycopg.connect(**_connect_kwargs(settings, "postgres"), autocommit=True)
    except psycopg.OperationalError:
        return psycopg.connect(**_connect_kwargs(settings, settings["NAME"]), autocommit=True)


@contextmanager
def scratch_sentry_database(
    connection: BaseDatabaseWrapper, *, prefix: str = "sentry_mode"
) -> Iterator[dict[str, Any]]:
    """A new database on ``connection``'s server holding only Sentry's tables; dropped on exit.

    Built from SENTRY_SCHEMA_SQL alone: no migrations, no Django tables. Yields psycopg connection
    keyword arguments for it (``dbname`` is its name). Dropped even when the body fails, with
    ``FORCE`` so a subprocess that was killed mid-run cannot keep it alive.
    """
    settings = connection.settings_dict
    name = f"{prefix}_{secrets.token_hex(6)}"
    with _server_connection(settings) as server:
        server.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            target = _connect_kwargs(settings, name)
            with psycopg.connect(**target, autocommit=True) as scratch:
                scratch.execute(SENTRY_SCHEMA_SQL.read_text().encode())
            yield target
        finally:
            server.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
