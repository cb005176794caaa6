"""Settings for the regression_tracking project.

``DATABASE_URL`` picks the database (``postgres://…`` or ``sqlite:///…``); unset or empty means the
embedded SQLite file ``db.sqlite3`` in the project directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from regression_tracking.sentry import init_sentry

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-dev-key-regression-tracking")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "regression_tracking",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"

# An empty DATABASE_URL counts as unset (dj-database-url rejects an empty one).
DEFAULT_DATABASE_URL = f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
DATABASES = {
    "default": dj_database_url.parse(os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL),
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"

# Where regression_tracking.metrics sends counters: a dotted path to a backend class.
REGRESSION_TRACKING_METRICS_BACKEND = os.environ.get(
    "REGRESSION_TRACKING_METRICS_BACKEND", "regression_tracking.metrics.NoopBackend"
)

# The statsd server of regression_tracking.metrics.StatsdBackend; an empty prefix sends bare keys.
REGRESSION_TRACKING_STATSD_HOST = os.environ.get("REGRESSION_TRACKING_STATSD_HOST") or "127.0.0.1"
_statsd_port = os.environ.get("REGRESSION_TRACKING_STATSD_PORT") or "8125"
if not _statsd_port.isdigit():
    raise ImproperlyConfigured(
        f"REGRESSION_TRACKING_STATSD_PORT must be a port number, not {_statsd_port!r}"
    )
REGRESSION_TRACKING_STATSD_PORT = int(_statsd_port)
REGRESSION_TRACKING_STATSD_PREFIX = os.environ.get(
    "REGRESSION_TRACKING_STATSD_PREFIX", "regression_tracking"
)

# How regression_tracking records are written to stderr: "key_value" or "json" (one object a line).
_LOG_FORMATS = ("key_value", "json")
REGRESSION_TRACKING_LOG_FORMAT = (
    os.environ.get("REGRESSION_TRACKING_LOG_FORMAT") or "key_value"
).lower()
if REGRESSION_TRACKING_LOG_FORMAT not in _LOG_FORMATS:
    raise ImproperlyConfigured(
        f"REGRESSION_TRACKING_LOG_FORMAT must be one of {', '.join(_LOG_FORMATS)}, "
        f"not {REGRESSION_TRACKING_LOG_FORMAT!r}"
    )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "key_value": {"()": "regression_tracking.log.KeyValueFormatter"},
        "json": {"()": "regression_tracking.log.JsonFormatter"},
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": REGRESSION_TRACKING_LOG_FORMAT,
        },
    },
    "loggers": {
        "regression_tracking": {
            "handlers": ["stderr"],
            "level": os.environ.get("REGRESSION_TRACKING_LOG_LEVEL", "INFO"),
            "propagate": True,
        },
    },
}

# Errors and WARNING records (orphaned regressions among them) go to Sentry when SENTRY_DSN is set;
# sentry-sdk itself reads SENTRY_ENVIRONMENT and SENTRY_RELEASE.
init_sentry(os.environ.get("SENTRY_DSN"))
