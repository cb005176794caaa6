"""Helpers shared by the tests: run manage.py in a subprocess against the test database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from io import StringIO
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connection
from django.db.models import BooleanField, Case, Value, When

from regression_tracking.cleanup.detection import scoped
from regression_tracking.models import RegressionGroup
from regression_tracking.orphans import is_orphan, orphan_reason
from regression_tracking.services import OrphanReason, OrphanScope

ROOT = Path(__file__).resolve().parent.parent


def database_url(*, application_name: str | None = None) -> str:
    """A DATABASE_URL for the database the tests run on (PostgreSQL).

    ``application_name`` tags the subprocess's connections in ``pg_stat_activity`` (dj-database-url
    passes query parameters through to the connection's OPTIONS).
    """
    settings = connection.settings_dict
    assert connection.vendor == "postgresql", "subprocesses need a database they can share"
    host = settings["HOST"] or "localhost"
    if host.startswith("/"):
        host = quote(host, safe="")
    port = f":{settings['PORT']}" if settings["PORT"] else ""
    user = quote(settings["USER"] or "postgres", safe="")
    password = f":{quote(settings['PASSWORD'], safe='')}" if settings["PASSWORD"] else ""
    query = f"?{urlencode({'application_name': application_name})}" if application_name else ""
    return f"postgres://{user}{password}@{host}{port}/{settings['NAME']}{query}"


def other_connection() -> psycopg.Connection[tuple[object, ...]]:
    """A second connection to the test database (PostgreSQL), committing on its own."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params, autocommit=True)


def manage_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": database_url(), **extra}
    env.setdefault("REGRESSION_TRACKING_LOG_LEVEL", "WARNING")
    return env


def manage_command(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), *args]


def run_manage(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        manage_command(*args),
        env=manage_env(**env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def settings_in_subprocess(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` after django.setup() in a fresh interpreter, with ``env`` as the only extras."""
    clean_env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("REGRESSION_TRACKING_", "SENTRY_"))
    }
    return subprocess.run(
        [sys.executable, "-c", f"import django\ndjango.setup()\n{code}"],
        cwd=ROOT,
        env={**clean_env, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def run_cleanup(*args: str) -> str:
    """cleanup_orphaned_regressions' stdout and stderr, with the elapsed time masked."""
    out = StringIO()
    call_command("cleanup_orphaned_regressions", *args, stdout=out, stderr=out, no_color=True)
    return re.sub(r"elapsed: \d+\.\d\ds", "elapsed: <s>", out.getvalue())


@dataclass(frozen=True, slots=True)
class Orphan:
    id: int
    project_id: int
    reason: OrphanReason
    active: bool
    # date_added is before the cutoff: the grace period is over.
    old_enough: bool


def select_orphans(
    *, cutoff: datetime, scope: OrphanScope | None = None, using: str = DEFAULT_DB_ALIAS
) -> list[Orphan]:
    """Every orphan in scope, in id order, with its reason and whether it is older than ``cutoff``.

    One ORM query straight from the rule's expressions (an object per orphan), to check what
    ``detect_orphans`` and the cleanup find against.
    """
    scope = scope or OrphanScope()
    rows = (
        scoped(RegressionGroup.objects.using(using), scope)
        .filter(is_orphan())
        .annotate(
            orphan_reason=orphan_reason(),
            old_enough=Case(
                When(date_added__lt=cutoff, then=Value(True)),
                default=Value(False),
                output_field=BooleanField(),
            ),
        )
        .order_by("id")
        .values_list("id", "project_id", "orphan_reason", "active", "old_enough")
    )
    return [
        Orphan(
            id=row_id,
            project_id=project_id,
            reason=OrphanReason(reason),
            active=active,
            old_enough=old_enough,
        )
        for row_id, project_id, reason, active, old_enough in rows
    ]
