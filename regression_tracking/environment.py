"""Settings read from the environment: each bad value is a ``ConfigurationError`` of one line.

The messages name the variable and what it accepts, never echo a secret (a ``DATABASE_URL`` is not
repeated, since it may hold a password). The entry points (``manage.py``, ``regression-tracking``)
print them as one line and exit 1.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

# The database engines this project runs on; dj-database-url knows many more.
SUPPORTED_ENGINES = {
    "django.db.backends.postgresql": "postgres://",
    "django.db.backends.sqlite3": "sqlite:///",
}

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


class ConfigurationError(ImproperlyConfigured):
    """A setting from the environment that cannot be used; its message is one line."""


def _get(name: str, environ: Mapping[str, str] | None) -> str | None:
    return (os.environ if environ is None else environ).get(name)


def env_str(name: str, default: str, *, environ: Mapping[str, str] | None = None) -> str:
    """The variable's value; unset or empty means ``default``."""
    return _get(name, environ) or default


def env_bool(name: str, default: bool, *, environ: Mapping[str, str] | None = None) -> bool:
    """1/true/yes/on or 0/false/no/off (any case; empty is false); unset means ``default``."""
    raw = _get(name, environ)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(
        f"{name} must be one of 1, true, yes, on, 0, false, no, off (or empty), not {raw!r}"
    )


def env_list(
    name: str, default: list[str], *, environ: Mapping[str, str] | None = None
) -> list[str]:
    """Comma-separated values, blanks dropped; unset or empty means ``default``."""
    raw = _get(name, environ)
    if not raw:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_int(
    name: str,
    default: int,
    *,
    minimum: int = 0,
    maximum: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """A whole number in ASCII digits within the bounds; unset or empty means ``default``."""
    raw = _get(name, environ)
    if not raw:
        return default
    value = raw.strip()
    if not (value.isascii() and value.isdigit()):
        raise ConfigurationError(f"{name} must be a whole number, not {raw!r}")
    number = int(value)
    if number < minimum or (maximum is not None and number > maximum):
        upper = f"..{maximum}" if maximum is not None else " or more"
        raise ConfigurationError(f"{name} must be {minimum}{upper}, not {number}")
    return number


def env_port(name: str, default: int, *, environ: Mapping[str, str] | None = None) -> int:
    """A TCP/UDP port number, 1..65535."""
    raw = _get(name, environ)
    if raw and not (raw.strip().isascii() and raw.strip().isdigit() and 0 < int(raw) < 65536):
        raise ConfigurationError(f"{name} must be a port number (1..65535), not {raw!r}")
    return env_int(name, default, minimum=1, maximum=65535, environ=environ)


def env_choice(
    name: str, default: str, choices: tuple[str, ...], *, environ: Mapping[str, str] | None = None
) -> str:
    """One of ``choices`` (compared in lower case); unset or empty means ``default``."""
    value = (_get(name, environ) or default).strip().lower()
    if value not in choices:
        raise ConfigurationError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def env_log_level(name: str, default: str, *, environ: Mapping[str, str] | None = None) -> str:
    """A logging level name (DEBUG, INFO, WARNING, ERROR, CRITICAL), in any case."""
    value = (_get(name, environ) or default).strip().upper()
    if value not in logging.getLevelNamesMapping():
        raise ConfigurationError(f"{name} must be one of {', '.join(LOG_LEVELS)}, not {value!r}")
    return value


def env_database(
    name: str = "DATABASE_URL", *, default: str, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Django's DATABASES entry for the URL in ``name``; unset or empty means ``default``.

    Only PostgreSQL (``postgres://``, ``postgresql://``) and SQLite (``sqlite:///``) are accepted:
    a MySQL URL would parse and then fail on first use with a traceback.
    """
    url = (_get(name, environ) or "").strip() or default
    if "://" not in url:
        raise ConfigurationError(
            f"{name} is not a database URL: use {' or '.join(SUPPORTED_ENGINES.values())}"
        )
    scheme = url.partition("://")[0]
    try:
        database = dj_database_url.parse(url)
    except dj_database_url.UnknownSchemeError:
        raise ConfigurationError(
            f"{name} has an unsupported scheme {scheme}://: "
            f"use {' or '.join(SUPPORTED_ENGINES.values())}"
        ) from None
    except (ValueError, dj_database_url.ParseError):
        # urllib's "Port could not be cast" and dj-database-url's ParseError; not repeated, since
        # either may quote the password.
        raise ConfigurationError(
            f"{name} is not a valid URL (a non-numeric or out-of-range port, or a part that "
            "needs %-quoting)"
        ) from None
    engine = str(database.get("ENGINE", ""))
    if engine not in SUPPORTED_ENGINES:
        raise ConfigurationError(
            f"{name} has an unsupported scheme {scheme}://: "
            f"use {' or '.join(SUPPORTED_ENGINES.values())}"
        )
    if not database.get("NAME"):
        raise ConfigurationError(f"{name} names no database (the path after the host)")
    if engine == "django.db.backends.postgresql":
        keepalives = postgresql_keepalives(pgoptions=_get("PGOPTIONS", environ) or "")
        database["OPTIONS"] = {**keepalives, **dict(database.get("OPTIONS") or {})}
    return dict(database)


# TCP keepalives, seconds: a peer that stops answering is noticed after about
# idle + interval * count = 60 s, on both sides of the connection.
KEEPALIVE_IDLE_SECONDS = 30
KEEPALIVE_INTERVAL_SECONDS = 10
KEEPALIVE_COUNT = 3


def postgresql_keepalives(*, pgoptions: str = "") -> dict[str, Any]:
    """libpq connection options that bound how long a silent network can hold a session.

    Client side (libpq's ``keepalives*``), a blocked read on a server that stopped answering fails
    instead of waiting for the kernel's default of about two hours. Server side
    (``tcp_keepalives_*`` in the startup ``options``), the server drops a client that vanished, and
    with it the cleanup's session advisory lock, so a partition does not keep every next run
    refused. Options given in the URL's query win over these. libpq lets the ``options`` parameter
    replace the ``PGOPTIONS`` environment variable, so ``pgoptions`` (its value) is kept in front.
    """
    server = (
        f"-c tcp_keepalives_idle={KEEPALIVE_IDLE_SECONDS}"
        f" -c tcp_keepalives_interval={KEEPALIVE_INTERVAL_SECONDS}"
        f" -c tcp_keepalives_count={KEEPALIVE_COUNT}"
    )
    if pgoptions.strip():
        server = f"{pgoptions.strip()} {server}"
    return {
        "keepalives": 1,
        "keepalives_idle": KEEPALIVE_IDLE_SECONDS,
        "keepalives_interval": KEEPALIVE_INTERVAL_SECONDS,
        "keepalives_count": KEEPALIVE_COUNT,
        "options": server,
    }
