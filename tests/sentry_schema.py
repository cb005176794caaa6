"""Helpers to build upstream Sentry's schema (../shared/sentry_schema.sql) in PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path

from django.db.backends.base.base import BaseDatabaseWrapper

ROOT = Path(__file__).resolve().parent.parent
SENTRY_SCHEMA_SQL = Path(
    os.environ.get("SENTRY_SCHEMA_SQL", ROOT.parent / "shared" / "sentry_schema.sql")
)


def load_sentry_schema(connection: BaseDatabaseWrapper, schema: str) -> None:
    """Create ``schema`` holding Sentry's five tables, and put it first on the search path.

    Runs in the caller's transaction; ``SET LOCAL`` keeps the search path to that transaction.
    """
    ddl = SENTRY_SCHEMA_SQL.read_text()
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {connection.ops.quote_name(schema)}")
        cursor.execute(f"SET LOCAL search_path TO {connection.ops.quote_name(schema)}")
        cursor.execute(ddl)
