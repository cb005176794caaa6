"""WSGI entry point of the package (``regression_tracking.wsgi:application``).

With DEBUG off the web app refuses to start on the development secret key: signed sessions and
CSRF tokens would be forgeable. Commands, which serve no request, do not import this module. With
the package's settings it also refuses to start without DATABASE_URL, as the console script does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

from django.core.handlers.wsgi import WSGIHandler

from regression_tracking.cli import (
    DATABASE_URL_NOT_SET,
    PACKAGE_SETTINGS,
    exit_on_configuration_error,
)
from regression_tracking.environment import ConfigurationError

os.environ.setdefault("DJANGO_SETTINGS_MODULE", PACKAGE_SETTINGS)


def require_secret_key() -> None:
    """Exit with one line when DEBUG is off and DJANGO_SECRET_KEY was not given."""
    from django.conf import settings

    from regression_tracking.settings import DEVELOPMENT_SECRET_KEY

    if not settings.DEBUG and settings.SECRET_KEY == DEVELOPMENT_SECRET_KEY:
        sys.stderr.write(
            "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off: the web app will not start "
            "with the development key\n"
        )
        sys.stderr.flush()
        if threading.current_thread() is not threading.main_thread():
            # runserver's autoreloader loads the app in a thread, where SystemExit ends only that
            # thread and the server would sit there serving nothing.
            os._exit(1)
        raise SystemExit(1)


def require_database_url() -> None:
    """With the package's settings, exit with one line when DATABASE_URL is unset or empty."""
    if os.environ["DJANGO_SETTINGS_MODULE"] == PACKAGE_SETTINGS and not os.environ.get(
        "DATABASE_URL", ""
    ):
        with exit_on_configuration_error("wsgi"):
            raise ConfigurationError(DATABASE_URL_NOT_SET)


def exit_on_sigterm_until_serving() -> None:
    """In a process forked from this one, SIGTERM's default action (exit) until the child sets its
    own handler.

    gunicorn's worker starts with the master's SIGTERM handler, which only queues the signal for a
    master loop the worker never runs: a SIGTERM before the worker installs its own (a ``docker
    stop`` just after start, or while a worker is replaced) was lost, and the master waited its
    graceful timeout for a worker that never stopped. A worker that has not started serving has
    nothing to finish. ``tests/test_serve.py`` widens that window to measure it.
    """
    # ValueError: forked from a thread other than the main one, which has no handler to replace.
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def get_application() -> WSGIHandler:
    """The WSGI application, after the configuration, the secret key and the database are
    checked."""
    from django.core.wsgi import get_wsgi_application

    with exit_on_configuration_error("wsgi"):
        application = get_wsgi_application()
    require_secret_key()
    require_database_url()
    return application


os.register_at_fork(after_in_child=exit_on_sigterm_until_serving)
application = get_application()
