"""Error reporting to Sentry, switched on by ``SENTRY_DSN``."""

from __future__ import annotations

import logging
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.integrations.logging import LoggingIntegration


def init_sentry(dsn: str | None, **options: Any) -> bool:
    """Start sentry-sdk with ``dsn``, or do nothing when it is empty; True when started.

    Besides exceptions, every WARNING or worse record becomes an event (the orphan warning
    "Missing issue group for regression issue" among them, with its ``extra=`` fields); INFO
    records become breadcrumbs. ``options`` go to ``sentry_sdk.init``; their ``integrations`` are
    added to these two.
    """
    if not dsn:
        return False
    integrations = [
        DjangoIntegration(),
        LoggingIntegration(level=logging.INFO, event_level=logging.WARNING),
        *options.pop("integrations", ()),
    ]
    sentry_sdk.init(dsn=dsn, integrations=integrations, **options)
    return True
