"""Error reporting to Sentry, switched on by ``SENTRY_DSN`` (the ``sentry`` extra)."""

from __future__ import annotations

import logging
from typing import Any

from regression_tracking.environment import ConfigurationError

INSTALL_HINT = "pip install 'regression-tracking[sentry]'"


def init_sentry(dsn: str | None, **options: Any) -> bool:
    """Start sentry-sdk with ``dsn``, or do nothing when it is empty; True when started.

    Besides exceptions, every WARNING or worse record becomes an event (the orphan warning
    "Missing issue group for regression issue" among them, with its ``extra=`` fields); INFO
    records become breadcrumbs. ``options`` go to ``sentry_sdk.init``; their ``integrations`` are
    added to these two. sentry-sdk is imported only here, so an install without it runs as long
    as no DSN is set; a DSN it cannot parse is a ``ConfigurationError``, checked before init.

    Events are scrubbed before they are sent (``ops.secrets_filter``): keys named
    like a secret by sentry-sdk's EventScrubber, and the database password and DSN in any string
    by a ``before_send`` (a caller's own ``before_send`` runs after it).
    """
    if not dsn:
        return False
    try:
        import sentry_sdk
        from sentry_sdk.integrations.django import DjangoIntegration
        from sentry_sdk.integrations.logging import LoggingIntegration
        from sentry_sdk.utils import BadDsn, Dsn
    except ImportError:
        raise ConfigurationError(
            f"SENTRY_DSN is set but sentry-sdk is not installed: {INSTALL_HINT}"
        ) from None
    try:
        Dsn(dsn)
    except BadDsn as error:
        # BadDsn names the part that is wrong ("Missing public key", "Unsupported scheme …").
        reason = str(error).splitlines()[0] if str(error) else "cannot be parsed"
        raise ConfigurationError(f"SENTRY_DSN is not a valid Sentry DSN: {reason}") from None
    except ValueError:
        raise ConfigurationError("SENTRY_DSN is not a valid Sentry DSN: not a URL") from None
    integrations = [
        DjangoIntegration(),
        LoggingIntegration(level=logging.INFO, event_level=logging.WARNING),
        *options.pop("integrations", ()),
    ]
    from regression_tracking.ops.secrets_filter import sentry_before_send, sentry_event_scrubber

    options.setdefault("event_scrubber", sentry_event_scrubber())
    options["before_send"] = sentry_before_send(dsn, options.pop("before_send", None))
    sentry_sdk.init(dsn=dsn, integrations=integrations, **options)
    return True
