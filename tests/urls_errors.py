"""URLs for the error-page tests: the package's, plus a view that fails."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path

from regression_tracking.urls import urlpatterns as package_urlpatterns


def fail(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("the view failed on purpose")


urlpatterns = [*package_urlpatterns, path("boom/", fail)]
