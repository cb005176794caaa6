"""WSGI entry point of the repository (``config.wsgi:application``): the package's, with config's
settings."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from regression_tracking.wsgi import application

__all__ = ["application"]
