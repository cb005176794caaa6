"""The settings the installed package runs with: ``regression-tracking`` and its WSGI application.

Everything comes from the environment (README, "Configuration"); a bad value is a one-line
``ConfigurationError``. ``DATABASE_URL`` unset or empty means ``db.sqlite3`` in the current
directory; the repository's ``config/settings.py`` builds on this module and puts it in the project
directory instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from regression_tracking.environment import (
    env_bool,
    env_choice,
    env_database,
    env_int,
    env_list,
    env_log_level,
    env_port,
    env_str,
)
from regression_tracking.ops.sentry import init_sentry

# Used when DJANGO_SECRET_KEY is unset: fine for commands, refused by the web app with DEBUG off.
DEVELOPMENT_SECRET_KEY = "insecure-dev-key-regression-tracking"
SECRET_KEY = env_str("DJANGO_SECRET_KEY", DEVELOPMENT_SECRET_KEY)
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

# DJANGO_HTTPS=on: the admin is served over HTTPS, directly or behind a proxy that terminates TLS
# and sets X-Forwarded-Proto (a Kubernetes ingress does): redirect http, secure cookies.
HTTPS = env_bool("DJANGO_HTTPS", False)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)

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
    # Serves STATIC_ROOT (what collectstatic gathered), so the admin is styled with DEBUG off.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "regression_tracking.urls"
WSGI_APPLICATION = "regression_tracking.wsgi.application"

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

DATABASES = {"default": env_database(default=f"sqlite:///{Path.cwd() / 'db.sqlite3'}")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where collectstatic gathers the admin's CSS and JavaScript, for WhiteNoise to serve.
STATIC_ROOT = env_str("DJANGO_STATIC_ROOT", "") or None

# Error pages and reports hide DATABASE_URL and SENTRY_DSN too, not only *PASSWORD*/*KEY* settings.
DEFAULT_EXCEPTION_REPORTER_FILTER = "regression_tracking.ops.error_reports.SafeReporterFilter"

# Where regression_tracking.ops.metrics sends counters: a dotted path to a backend class.
REGRESSION_TRACKING_METRICS_BACKEND = env_str(
    "REGRESSION_TRACKING_METRICS_BACKEND", "regression_tracking.metrics.NoopBackend"
)

# The statsd server of regression_tracking.metrics.StatsdBackend; an empty prefix sends bare keys.
REGRESSION_TRACKING_STATSD_HOST = env_str("REGRESSION_TRACKING_STATSD_HOST", "127.0.0.1")
REGRESSION_TRACKING_STATSD_PORT = env_port("REGRESSION_TRACKING_STATSD_PORT", 8125)
# An empty prefix is meant (bare keys), so only an unset one takes the default.
REGRESSION_TRACKING_STATSD_PREFIX = os.environ.get(
    "REGRESSION_TRACKING_STATSD_PREFIX", "regression_tracking"
)

# How log records are written to stderr: "key_value" or "json" (one object a line).
REGRESSION_TRACKING_LOG_FORMAT = env_choice(
    "REGRESSION_TRACKING_LOG_FORMAT", "key_value", ("key_value", "json")
)
REGRESSION_TRACKING_LOG_LEVEL = env_log_level("REGRESSION_TRACKING_LOG_LEVEL", "INFO")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "key_value": {"()": "regression_tracking.ops.log.KeyValueFormatter"},
        "json": {"()": "regression_tracking.ops.log.JsonFormatter"},
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
            "level": REGRESSION_TRACKING_LOG_LEVEL,
            "propagate": True,
        },
        # Django's own records (a server error's traceback among them) on stderr whatever DEBUG
        # is; Django alone prints them only with DEBUG on.
        "django": {
            "handlers": ["stderr"],
            "level": env_log_level("DJANGO_LOG_LEVEL", "ERROR"),
            "propagate": True,
        },
    },
}

# Errors and WARNING records (orphaned regressions among them) go to Sentry when SENTRY_DSN is set;
# sentry-sdk itself reads SENTRY_ENVIRONMENT and SENTRY_RELEASE.
init_sentry(env_str("SENTRY_DSN", ""))
