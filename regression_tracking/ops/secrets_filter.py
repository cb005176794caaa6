"""Finding and hiding the database password and the Sentry DSN in what leaves the process.

Django's debug page and Sentry's events show a traceback's local variables, and a failed database
connection has the password in several of them: the DATABASES entry, psycopg's connection
parameters and its conninfo string ("host=... password=..."). Hiding variables by name is not
enough, so values are searched too: for the secrets configured here (every DATABASES password,
``DATABASE_URL``'s and the DSN's credentials) and for the password of any URL
(``scheme://user:password@``) or conninfo string (``password=...``), configured or not.

Only ``django.conf.settings`` is read, and only when asked: ``regression_tracking.ops.sentry`` uses
this module while the settings are still being built.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

# What the Sentry side puts in place of a secret (sentry-sdk's own word for scrubbed data).
SENTRY_SUBSTITUTE = "[Filtered]"

# A secret shorter than this is not searched for inside other text: it would match everywhere
# (a one-letter password hides every string). URL and conninfo passwords are still hidden.
MINIMUM_SECRET_LENGTH = 4

# Names of variables and dict keys whose value is hidden whatever it holds.
SECRET_NAMES = re.compile(
    "PASS|PWD|CONNINFO|DSN|DATABASE_URL|SECRET|TOKEN|SIGNATURE|API_?KEY|PRIVATE_?KEY", flags=re.I
)

# Keys sentry-sdk's EventScrubber hides (exact, lower-case names), besides its defaults.
SENTRY_DENYLIST = ("password", "conninfo", "dsn", "database_url", "sentry_dsn", "passfile")

# The password of scheme://user:password@host; group 1 is what stays before it.
_URL_PASSWORD = re.compile(r"([a-z][a-z0-9+.-]*://[^\s/:@]*:)([^\s/@]+)(?=@)", flags=re.I)
# password=... in a libpq conninfo string, quoted ('...' with \-escapes) or up to a space.
_CONNINFO_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s']+)", flags=re.I)


def url_secrets(url: str, *, user_is_secret: bool = False) -> list[str]:
    """The password in ``url``'s user part (and the user, a DSN's key), raw and %-decoded.

    With any of them, the whole URL too.
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return []
    # A database URL's user name is not secret; a DSN's is its public key.
    found = [value for value in (parts.password, user_is_secret and parts.username) if value]
    if not found:
        return []
    return [url.strip(), *found, *(unquote(value) for value in found)]


def known_secrets(dsn: str = "") -> list[str]:
    """The configured secrets: DATABASES passwords, DATABASE_URL's, SENTRY_DSN's and ``dsn``'s."""
    found: list[str] = []
    from django.conf import settings

    if settings.configured:
        databases = getattr(settings, "DATABASES", {}) or {}
        for entry in databases.values():
            if not isinstance(entry, dict):
                continue
            options = entry.get("OPTIONS") or {}
            for value in (entry.get("PASSWORD"), options.get("password")):
                if isinstance(value, str) and value:
                    found.append(value)
    found.extend(url_secrets(os.environ.get("DATABASE_URL", "")))
    for url in (os.environ.get("SENTRY_DSN", ""), dsn):
        found.extend(url_secrets(url, user_is_secret=True))
    searchable = {secret for secret in found if len(secret) >= MINIMUM_SECRET_LENGTH}
    # Longest first, so a DSN is replaced whole before its key is looked for.
    return sorted(searchable, key=len, reverse=True)


def contains_secret(text: str, secrets: Iterable[str]) -> bool:
    """Whether ``text`` holds one of ``secrets``, a URL's password or a conninfo password."""
    return (
        any(secret in text for secret in secrets)
        or _URL_PASSWORD.search(text) is not None
        or _CONNINFO_PASSWORD.search(text) is not None
    )


def redact(text: str, secrets: Iterable[str], substitute: str = SENTRY_SUBSTITUTE) -> str:
    """``text`` with each secret, URL password and conninfo password replaced by ``substitute``."""
    # The patterns first: a replaced secret could break the shape they look for.
    text = _URL_PASSWORD.sub(lambda match: match.group(1) + substitute, text)
    text = _CONNINFO_PASSWORD.sub(lambda match: match.group(1) + substitute, text)
    for secret in secrets:
        text = text.replace(secret, substitute)
    return text


def redact_nested(value: Any, secrets: list[str], substitute: str = SENTRY_SUBSTITUTE) -> Any:
    """``value`` with every string in it (dict keys and values, list items) redacted."""
    if isinstance(value, str):
        return redact(value, secrets, substitute)
    if isinstance(value, dict):
        return {
            redact_nested(key, secrets, substitute): redact_nested(item, secrets, substitute)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact_nested(item, secrets, substitute) for item in value]
    if isinstance(value, tuple):
        return tuple(redact_nested(item, secrets, substitute) for item in value)
    return value


def sentry_event_scrubber() -> Any:
    """sentry-sdk's EventScrubber: its default denylists, the database names, every depth."""
    from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

    return EventScrubber(
        denylist=[*DEFAULT_DENYLIST, *SENTRY_DENYLIST], recursive=True, send_default_pii=False
    )


def sentry_before_send(
    dsn: str, then: Callable[[Any, Any], Any] | None = None
) -> Callable[[Any, Any], Any]:
    """A ``before_send`` redacting the secrets in every string of the (serialized) event.

    The EventScrubber hides values by key only; the password also arrives inside strings (a
    conninfo, a URL in a message). ``then``, a caller's own ``before_send``, runs afterwards.
    """

    def before_send(event: Any, hint: Any) -> Any:
        redacted = redact_nested(event, known_secrets(dsn))
        return then(redacted, hint) if then is not None else redacted

    return before_send
