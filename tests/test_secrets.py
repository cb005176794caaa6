"""The database password never leaves the process: not on Django's debug page, not in Sentry.

A real connection attempt to a closed port (127.0.0.1:1) with a password in the URL raises a
real ``OperationalError``; its traceback's frames hold the password in connection parameters and in
psycopg's conninfo string. The debug page and the Sentry event are built from those frames.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from django.conf import settings as django_settings
from django.db import OperationalError, connections
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path

from regression_tracking.environment import env_database
from regression_tracking.ops.error_reports import SafeReporterFilter
from regression_tracking.ops.secrets_filter import known_secrets, redact
from regression_tracking.ops.sentry import init_sentry
from tests.test_log import FAKE_DSN, CapturingTransport

PASSWORD = "S3cretPa55"
BROKEN_DATABASE_URL = f"postgres://postgres:{PASSWORD}@127.0.0.1:1/x"
BROKEN_ALIAS = "broken"
SUBSTITUTE = SafeReporterFilter.cleansed_substitute


def query_broken_database() -> None:
    """Connects to the closed port the way a query would: OperationalError, from psycopg."""
    connections[BROKEN_ALIAS].ensure_connection()


def broken_database_view(request: HttpRequest) -> HttpResponse:
    query_broken_database()
    return HttpResponse("unreachable")


urlpatterns = [path("broken-database/", broken_database_view)]


@pytest.fixture
def broken_database(monkeypatch: pytest.MonkeyPatch, django_db_blocker: Any) -> Iterator[None]:
    """A DATABASES entry, parsed from a URL with a password, for a server that is not there."""
    entry = env_database(default="", environ={"DATABASE_URL": BROKEN_DATABASE_URL})
    # The defaults Django fills in for a configured alias (OPTIONS, TIME_ZONE, TEST, ...); it
    # checks that a "default" is among the aliases it is given.
    entry = connections.configure_settings({"default": entry})["default"]
    monkeypatch.setitem(connections.settings, BROKEN_ALIAS, entry)
    if connections.settings is not django_settings.DATABASES:
        monkeypatch.setitem(django_settings.DATABASES, BROKEN_ALIAS, entry)
    # The connection attempt is real; only the test database is not needed.
    with django_db_blocker.unblock():
        try:
            yield
        finally:
            connections[BROKEN_ALIAS].close()
            del connections[BROKEN_ALIAS]


@pytest.fixture
def sentry_events() -> Iterator[list[dict[str, Any]]]:
    """sentry-sdk started by the project's init_sentry, sending to a list; stopped afterwards."""
    transport = CapturingTransport()
    assert init_sentry(FAKE_DSN, transport=transport)
    try:
        yield transport.events
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)
        sentry_sdk.get_isolation_scope().clear()


@pytest.mark.postgresql
@pytest.mark.urls("tests.test_secrets")
class TestDebugPage:
    def test_database_error_page_never_shows_the_password(
        self, broken_database: None, settings: Any
    ) -> None:
        settings.DEBUG = True
        client = Client(raise_request_exception=False)

        response = client.get("/broken-database/")

        html = response.content.decode()
        assert response.status_code == 500
        # The technical page, with the frames' local variables.
        assert "OperationalError" in html
        assert "Local vars" in html
        assert "conninfo" in html
        assert html.count(PASSWORD) == 0
        assert SUBSTITUTE in html


class TestSafeReporterFilter:
    def test_strings_holding_the_password_are_hidden_in_nested_values(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(django_settings.DATABASES, "other", {"PASSWORD": PASSWORD})
        cleanse = SafeReporterFilter().cleanse_frame_value
        value = {"params": [("host=db", f"host=db password={PASSWORD}")], "port": 5432}
        assert cleanse("value", value) == {"params": [("host=db", SUBSTITUTE)], "port": 5432}

    def test_url_credentials_and_conninfo_passwords_are_hidden_unconfigured(self) -> None:
        cleanse = SafeReporterFilter().cleanse_frame_value
        assert cleanse("url", "postgres://u:unlisted@h/db") == SUBSTITUTE
        assert cleanse("info", "host=h password='un listed'") == SUBSTITUTE
        assert cleanse("url", "postgres://u@h/db") == "postgres://u@h/db"

    def test_variables_named_like_secrets_are_hidden(self) -> None:
        cleanse = SafeReporterFilter().cleanse_frame_value
        assert cleanse("password", "anything") == SUBSTITUTE
        assert cleanse("conninfo", "host=h") == SUBSTITUTE
        assert cleanse("sentry_dsn", "x") == SUBSTITUTE
        assert cleanse("DATABASE_URL", "x") == SUBSTITUTE
        assert cleanse("rows", [1, 2]) == [1, 2]

    def test_settings_named_conninfo_are_hidden(self) -> None:
        assert SafeReporterFilter().cleanse_setting("PG_CONNINFO", "host=h") == SUBSTITUTE


class TestRedact:
    def test_replaces_known_secrets_and_url_and_conninfo_passwords(self) -> None:
        text = f"postgres://u:{PASSWORD}@h/db host=h password=other {PASSWORD}"
        assert redact(text, [PASSWORD]) == (
            "postgres://u:[Filtered]@h/db host=h password=[Filtered] [Filtered]"
        )

    def test_known_secrets_come_from_databases_and_the_dsn(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(django_settings.DATABASES, "other", {"PASSWORD": PASSWORD})
        monkeypatch.setenv("DATABASE_URL", "postgres://u:from-env-pw@h/db")
        secrets = known_secrets("https://publickey123@o1.ingest.sentry.io/1")
        assert {PASSWORD, "from-env-pw", "publickey123"} <= set(secrets)


@pytest.mark.postgresql
class TestSentryEvent:
    def test_database_error_event_never_carries_the_password(
        self, broken_database: None, sentry_events: list[dict[str, Any]]
    ) -> None:
        try:
            query_broken_database()
        except OperationalError:
            sentry_sdk.capture_exception(sys.exc_info()[1])

        [event] = sentry_events
        serialized = json.dumps(event)
        assert event["exception"]["values"][-1]["type"] == "OperationalError"
        # The frames' local variables are sent (the scrubbing keeps them), without the password.
        frames = event["exception"]["values"][-1]["stacktrace"]["frames"]
        assert any(frame.get("vars") for frame in frames)
        assert serialized.count(PASSWORD) == 0

    def test_password_in_any_string_is_replaced(self, sentry_events: list[dict[str, Any]]) -> None:
        note = f"host=db.internal user=sentry password={PASSWORD} dbname=sentry"
        try:
            raise RuntimeError(f"could not connect: postgres://sentry:{PASSWORD}@db.internal/x")
        except RuntimeError as error:
            sentry_sdk.set_extra("note", note)
            sentry_sdk.capture_exception(error)

        [event] = sentry_events
        assert json.dumps(event).count(PASSWORD) == 0
        assert event["exception"]["values"][-1]["value"] == (
            "could not connect: postgres://sentry:[Filtered]@db.internal/x"
        )

    def test_scrubber_keeps_the_defaults_and_hides_database_names(
        self, sentry_events: list[dict[str, Any]]
    ) -> None:
        client = sentry_sdk.get_client()
        scrubber = client.options["event_scrubber"]
        assert {"password", "secret", "cookie", "conninfo", "dsn", "database_url"} <= set(
            scrubber.denylist
        )
        assert scrubber.recursive is True
        assert client.should_send_default_pii() is False
