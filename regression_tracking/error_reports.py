"""What Django's error pages and reports may show."""

from __future__ import annotations

import re

from django.views.debug import SafeExceptionReporterFilter


class SafeReporterFilter(SafeExceptionReporterFilter):
    """Django's filter, also hiding ``DATABASE_URL`` and ``SENTRY_DSN``.

    Django hides settings and request META keys whose names contain API, AUTH, TOKEN, KEY,
    SECRET, PASS, SIGNATURE or HTTP_COOKIE. ``DATABASE_URL`` (the password is in it) and
    ``SENTRY_DSN`` (its key) reach the page through the environment in ``request.META`` under a
    development server, so anything named ``*DATABASE_URL*`` or ``*DSN*`` is hidden too.
    """

    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|DATABASE_URL|DSN", flags=re.I
    )
