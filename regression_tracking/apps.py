from __future__ import annotations

from django.apps import AppConfig


class RegressionTrackingConfig(AppConfig):
    name = "regression_tracking"
    verbose_name = "Regression tracking"
    default_auto_field = "django.db.models.BigAutoField"
