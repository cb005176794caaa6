"""Helpers shared by the tests: run manage.py in a subprocess against the test database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    """A DATABASE_URL for the database the tests run on (PostgreSQL)."""
    settings = connection.settings_dict
    assert connection.vendor == "postgresql", "subprocesses need a database they can share"
    host = settings["HOST"] or "localhost"
    if host.startswith("/"):
        host = quote(host, safe="")
    port = f":{settings['PORT']}" if settings["PORT"] else ""
    user = quote(settings["USER"] or "postgres", safe="")
    password = f":{quote(settings['PASSWORD'], safe='')}" if settings["PASSWORD"] else ""
    return f"postgres://{user}{password}@{host}{port}/{settings['NAME']}"


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
