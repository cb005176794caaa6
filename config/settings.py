"""The repository's settings: the package's (regression_tracking.settings), for this checkout.

The only differences: ``DATABASE_URL`` unset or empty means ``db.sqlite3`` in the project directory
(not the current one), and the URLs and WSGI application are ``config``'s.
"""

from __future__ import annotations

from pathlib import Path

from regression_tracking.environment import env_database
from regression_tracking.settings import *  # noqa: F403

BASE_DIR = Path(__file__).resolve().parent.parent

DATABASES = {"default": env_database(default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
