from __future__ import annotations

from regression_tracking.urls import urlpatterns

__all__ = ["urlpatterns"]
