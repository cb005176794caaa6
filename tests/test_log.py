from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.transport import Transport

from regression_tracking.ops.log import JsonFormatter, KeyValueFormatter
from regression_tracking.ops.sentry import init_sentry
from regression_tracking.services import (
    MISSING_ISSUE_GROUP_MESSAGE,
    get_issue_groups_for_regressions,
)
from tests.factories import RegressionGroupFactory, issue_hash
from tests.utils import settings_in_subprocess

LOOKUP_LOGGER = "regression_tracking.services.lookup"
FAKE_DSN = "https://public@sentry.invalid/1"
# 2026-11-28T12:00:00.250Z, exact in binary so the milliseconds never round.
CREATED = datetime(2026, 11, 28, 12, 0, 0, 250000, tzinfo=UTC).timestamp()


def orphan_record(**extra: Any) -> logging.LogRecord:
    """The lookup's orphan warning, as logger.warning(..., extra=extra) builds it."""
    record = logging.getLogger(LOOKUP_LOGGER).makeRecord(
        LOOKUP_LOGGER,
        logging.WARNING,
        "lookup.py",
        146,
        MISSING_ISSUE_GROUP_MESSAGE,
        (),
        None,
        extra=extra,
    )
    record.created = CREATED
    return record


WARN_ORPHAN = (
    "import logging\n"
    f"logging.getLogger({LOOKUP_LOGGER!r}).warning({MISSING_ISSUE_GROUP_MESSAGE!r},"
    " extra={'project_id': 3, 'reason': 'missing_grouphash'})"
)


class TestKeyValueFormatter:
    def test_extra_fields_follow_the_message_as_key_value(self) -> None:
        record = orphan_record(
            project_id=3,
            fingerprint=["0cc175b9c0f1b6a831c399e269772661"],
            reason="missing_grouphash",
            regression_group_ids=[7, 9],
        )
        assert KeyValueFormatter().format(record) == (
            "WARNING regression_tracking.services.lookup: Missing issue group for regression "
            "issue project_id=3 fingerprint=['0cc175b9c0f1b6a831c399e269772661'] "
            "reason='missing_grouphash' regression_group_ids=[7, 9]"
        )

    def test_no_extra_fields_is_just_the_message(self) -> None:
        assert KeyValueFormatter().format(orphan_record()) == (
            "WARNING regression_tracking.services.lookup: Missing issue group for regression issue"
        )


class TestJsonFormatter:
    def test_one_object_with_the_fixed_keys_then_the_extra_fields(self) -> None:
        record = orphan_record(project_id=3, reason="missing_grouphash", regression_group_ids=[7])

        line = JsonFormatter().format(record)

        assert line == (
            '{"timestamp": "2026-11-28T12:00:00.250+00:00", "level": "WARNING", '
            '"logger": "regression_tracking.services.lookup", '
            '"message": "Missing issue group for regression issue", '
            '"project_id": 3, "reason": "missing_grouphash", "regression_group_ids": [7]}'
        )

    def test_values_json_cannot_hold_are_written_as_str(self) -> None:
        record = orphan_record(amount=Decimal("1.5"), ids={4}, path=Path("/tmp/x"))
        document = json.loads(JsonFormatter().format(record))
        assert (document["amount"], document["ids"], document["path"]) == ("1.5", "{4}", "/tmp/x")

    def test_message_is_formatted_and_stays_on_one_line(self) -> None:
        record = logging.makeLogRecord(
            {"name": "regression_tracking", "levelname": "INFO", "msg": "a\n%s", "args": ("b",)}
        )
        line = JsonFormatter().format(record)
        assert "\n" not in line
        assert json.loads(line)["message"] == "a\nb"

    def test_extra_field_never_hides_a_fixed_key(self) -> None:
        document = json.loads(JsonFormatter().format(orphan_record(level="x", logger="y")))
        assert (document["level"], document["logger"]) == (
            "WARNING",
            "regression_tracking.services.lookup",
        )

    def test_exception_is_included(self) -> None:
        try:
            raise ValueError("boom")
        except ValueError:
            record = logging.getLogger("regression_tracking").makeRecord(
                "regression_tracking", logging.ERROR, "x.py", 1, "Failed", (), sys.exc_info()
            )
        document = json.loads(JsonFormatter().format(record))
        assert document["message"] == "Failed"
        assert document["exc_info"].splitlines()[-1] == "ValueError: boom"


class TestLogFormatSetting:
    def test_default_is_key_value(self) -> None:
        result = settings_in_subprocess(WARN_ORPHAN)
        assert result.stderr == (
            "WARNING regression_tracking.services.lookup: Missing issue group for regression "
            "issue project_id=3 reason='missing_grouphash'\n"
        )

    def test_json_writes_one_object_per_line(self) -> None:
        result = settings_in_subprocess(WARN_ORPHAN, REGRESSION_TRACKING_LOG_FORMAT="json")
        [line] = result.stderr.splitlines()
        document = json.loads(line)
        del document["timestamp"]
        assert document == {
            "level": "WARNING",
            "logger": LOOKUP_LOGGER,
            "message": MISSING_ISSUE_GROUP_MESSAGE,
            "project_id": 3,
            "reason": "missing_grouphash",
        }

    def test_unknown_format_is_a_clear_error(self) -> None:
        result = settings_in_subprocess("", REGRESSION_TRACKING_LOG_FORMAT="xml")
        assert result.returncode != 0
        assert result.stderr.splitlines()[-1] == (
            "regression_tracking.environment.ConfigurationError: "
            "REGRESSION_TRACKING_LOG_FORMAT must be one of key_value, json, not 'xml'"
        )


class CapturingTransport(Transport):
    """Keeps the events sentry-sdk would send."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        event = envelope.get_event()
        if event is not None:
            self.events.append(dict(event))


@pytest.fixture
def sentry_events() -> Iterator[list[dict[str, Any]]]:
    """sentry-sdk started as settings would start it, sending to a list; stopped afterwards."""
    transport = CapturingTransport()
    assert init_sentry(FAKE_DSN, transport=transport)
    try:
        yield transport.events
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)
        sentry_sdk.get_isolation_scope().clear()


class TestSentry:
    def test_no_dsn_starts_nothing(self) -> None:
        assert init_sentry(None) is False
        assert init_sentry("") is False
        assert not sentry_sdk.get_client().is_active()

    def test_starts_with_django_and_logging_integrations(self, sentry_events) -> None:
        client = sentry_sdk.get_client()
        assert client.is_active()
        assert client.get_integration(DjangoIntegration) is not None
        assert client.get_integration(LoggingIntegration) is not None

    @pytest.mark.django_db
    def test_orphan_warning_becomes_an_event_with_its_fields(self, sentry_events) -> None:
        regression = RegressionGroupFactory.create()

        get_issue_groups_for_regressions([regression])

        [event] = sentry_events
        assert event["level"] == "warning"
        assert event["logger"] == LOOKUP_LOGGER
        assert event["logentry"]["message"] == MISSING_ISSUE_GROUP_MESSAGE
        fields = {
            "project_id": regression.project_id,
            "fingerprint": [issue_hash(regression)],
            "reason": "missing_grouphash",
            "regression_group_ids": [regression.id],
        }
        # sentry-sdk adds its own extras (sys.argv) beside the record's.
        assert {key: event["extra"].get(key) for key in fields} == fields

    def test_info_records_are_not_events(self, sentry_events) -> None:
        logging.getLogger(LOOKUP_LOGGER).info("No issue group for fingerprint")
        assert sentry_events == []

    def test_errors_are_events(self, sentry_events) -> None:
        try:
            raise RuntimeError("cleanup failed")
        except RuntimeError:
            logging.getLogger("regression_tracking").exception("Cleanup failed")
        [event] = sentry_events
        assert event["level"] == "error"
        assert event["exception"]["values"][-1]["value"] == "cleanup failed"

    def test_sentry_dsn_setting_starts_sentry(self) -> None:
        result = settings_in_subprocess(
            "import sentry_sdk\nprint(sentry_sdk.get_client().is_active())",
            SENTRY_DSN="http://public@127.0.0.1:9/1",
        )
        assert result.stdout == "True\n"

    def test_no_sentry_dsn_setting_leaves_sentry_off(self) -> None:
        result = settings_in_subprocess(
            "import sentry_sdk\nprint(sentry_sdk.get_client().is_active())"
        )
        assert result.stdout == "False\n"
