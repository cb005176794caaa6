"""What Django's error pages and reports may show."""

from __future__ import annotations

import re
from types import FrameType
from typing import Any

from django.http import HttpRequest
from django.views.debug import SafeExceptionReporterFilter

from regression_tracking.ops.secrets_filter import SECRET_NAMES, contains_secret, known_secrets


class SafeReporterFilter(SafeExceptionReporterFilter):
    """Django's filter, also hiding ``DATABASE_URL``, ``SENTRY_DSN`` and the database password.

    Django hides settings and request META keys whose names contain API, AUTH, TOKEN, KEY,
    SECRET, PASS, SIGNATURE or HTTP_COOKIE. ``DATABASE_URL`` (the password is in it) and
    ``SENTRY_DSN`` (its key) reach the page through the environment in ``request.META`` under a
    development server, so anything named ``*DATABASE_URL*``, ``*DSN*`` or ``*CONNINFO*`` is
    hidden too.

    Django shows a traceback's local variables as they are, even with DEBUG off in an error
    e-mail, and a failed connection holds the password in several (the DATABASES entry, psycopg's
    parameters and conninfo). So a variable or dict key named like a secret is hidden, and so is
    any string holding a configured password or DSN, or a URL's or a conninfo's password, at any
    depth of dicts, lists and tuples; any other value whose repr holds one is hidden whole.
    """

    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|DATABASE_URL|DSN|CONNINFO",
        flags=re.I,
    )

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        cleansed = super().cleanse_setting(key, value)
        # Django recurses through this method, so strings at any depth pass here.
        if isinstance(cleansed, str) and contains_secret(cleansed, known_secrets()):
            return self.cleansed_substitute
        return cleansed

    def get_traceback_frame_variables(
        self, request: HttpRequest | None, tb_frame: FrameType
    ) -> Any:
        secrets = known_secrets()
        return [
            (name, self.cleanse_frame_value(name, value, secrets))
            for name, value in super().get_traceback_frame_variables(request, tb_frame)
        ]

    def cleanse_frame_value(self, name: Any, value: Any, secrets: list[str] | None = None) -> Any:
        """``value`` (a local variable or an item in one) with what may hold a secret hidden."""
        if secrets is None:
            secrets = known_secrets()
        if isinstance(name, str) and SECRET_NAMES.search(name):
            return self.cleansed_substitute
        if isinstance(value, str):
            return self.cleansed_substitute if contains_secret(value, secrets) else value
        if isinstance(value, dict):
            return {
                key: self.cleanse_frame_value(key, item, secrets) for key, item in value.items()
            }
        if isinstance(value, list):
            return [self.cleanse_frame_value("", item, secrets) for item in value]
        if isinstance(value, tuple):
            return tuple(self.cleanse_frame_value("", item, secrets) for item in value)
        if isinstance(value, bytes):
            text = value.decode("utf-8", "replace")
            return self.cleansed_substitute if contains_secret(text, secrets) else value
        if isinstance(value, int | float) or value is None:
            return value
        try:
            text = repr(value)
        except Exception:
            # Django shows such a value as the error its repr raised; nothing of it leaks.
            return value
        return self.cleansed_substitute if contains_secret(text, secrets) else value
