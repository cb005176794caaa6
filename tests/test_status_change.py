"""The status-change message and its consumer, held to upstream's contract.

Upstream's ``StatusChangeMessage`` (``src/sentry/issues/status_change_message.py``) carries an
``id`` (a uuid4 hex, filled by default) and refuses an empty fingerprint; its consumer's
``update_status`` (``src/sentry/issues/status_change_consumer.py``) refuses a status and substatus
that do not go together, logging an error and changing nothing.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import pytest

from regression_tracking.fingerprints import generate_fingerprint
from regression_tracking.issues.status_change import (
    INVALID_SUBSTATUS_MESSAGE,
    MISSING_SUBSTATUS_MESSAGE,
    UNEXPECTED_SUBSTATUS_MESSAGE,
    UNSUPPORTED_STATUS_MESSAGE,
    RecordingProducer,
)
from regression_tracking.models import Group, GroupStatus, GroupSubStatus, RegressionType
from regression_tracking.ops.log import record_extra
from regression_tracking.services import (
    StatusChange,
    process_status_change,
    redirect_escalations,
    redirect_resolutions,
)
from tests.factories import ProjectFactory, create_issue_for
from tests.test_detector_upstream import TIMESTAMP, create_version, trend

pytestmark = pytest.mark.django_db

FUNCTION = RegressionType.FUNCTION
S, SS = GroupStatus, GroupSubStatus


def issue(status: int = S.UNRESOLVED, substatus: int | None = SS.ONGOING) -> tuple[Group, str]:
    """A function regression's live issue, and its full fingerprint."""
    version = create_version(ProjectFactory.create(), FUNCTION, 123, version=1)
    create_issue_for(version, status=status, substatus=substatus)
    return Group.objects.get(project=version.project), generate_fingerprint(FUNCTION, 123)


class TestMessage:
    def test_each_message_gets_its_own_uuid4_hex_id(self) -> None:
        first = StatusChange(("a",), 1, S.RESOLVED, None)
        second = StatusChange(("a",), 1, S.RESOLVED, None)

        assert uuid.UUID(hex=first.id).version == 4
        assert first.id == uuid.UUID(hex=first.id).hex
        assert first.id != second.id

    def test_an_empty_fingerprint_is_refused(self) -> None:
        with pytest.raises(ValueError, match="fingerprint must be non-empty"):
            StatusChange((), 1, S.RESOLVED, None)

    def test_the_resolution_path_fills_the_id(self) -> None:
        project = ProjectFactory.create()
        create_version(
            project,
            FUNCTION,
            123,
            version=1,
            date_regressed=TIMESTAMP - timedelta(days=2),
            baseline=100,
            regressed=300,
        )
        producer = RecordingProducer()

        redirect_resolutions(
            regression_type=FUNCTION,
            candidates=[trend(project, 123, 100)],
            timestamp=TIMESTAMP,
            producer=producer,
        )

        [produced] = producer.produced
        assert uuid.UUID(hex=produced.id).version == 4

    def test_the_escalation_path_fills_the_id(self) -> None:
        project = ProjectFactory.create()
        version = create_version(
            project,
            FUNCTION,
            123,
            version=1,
            date_regressed=TIMESTAMP - timedelta(days=2),
            baseline=100_000_000,
            regressed=300_000_000,
        )
        create_issue_for(version, status=S.UNRESOLVED, substatus=SS.ONGOING)
        producer = RecordingProducer()

        redirect_escalations(
            regression_type=FUNCTION,
            candidates=[trend(project, 123, 500_000_000)],
            timestamp=TIMESTAMP,
            producer=producer,
        )

        [produced] = producer.produced
        assert (produced.new_status, produced.new_substatus) == (S.UNRESOLVED, SS.ESCALATING)
        assert uuid.UUID(hex=produced.id).version == 4


REFUSED = [
    pytest.param(S.UNRESOLVED, None, MISSING_SUBSTATUS_MESSAGE, id="unresolved without substatus"),
    pytest.param(S.IGNORED, None, MISSING_SUBSTATUS_MESSAGE, id="ignored without substatus"),
    pytest.param(S.RESOLVED, SS.ONGOING, UNEXPECTED_SUBSTATUS_MESSAGE, id="resolved with one"),
    pytest.param(S.IGNORED, SS.ONGOING, INVALID_SUBSTATUS_MESSAGE, id="ignored ongoing"),
    pytest.param(S.IGNORED, SS.ESCALATING, INVALID_SUBSTATUS_MESSAGE, id="ignored escalating"),
    pytest.param(S.IGNORED, SS.REGRESSED, INVALID_SUBSTATUS_MESSAGE, id="ignored regressed"),
    pytest.param(S.IGNORED, SS.NEW, INVALID_SUBSTATUS_MESSAGE, id="ignored new"),
    pytest.param(S.UNRESOLVED, SS.NEW, INVALID_SUBSTATUS_MESSAGE, id="unresolved new"),
    pytest.param(
        S.UNRESOLVED, SS.UNTIL_ESCALATING, INVALID_SUBSTATUS_MESSAGE, id="unresolved until esc."
    ),
]
ACCEPTED = [
    (S.RESOLVED, None),
    (S.IGNORED, SS.UNTIL_ESCALATING),
    (S.IGNORED, SS.FOREVER),
    (S.IGNORED, SS.UNTIL_CONDITION_MET),
    (S.UNRESOLVED, SS.ESCALATING),
    (S.UNRESOLVED, SS.REGRESSED),
]


class TestConsumer:
    @pytest.mark.parametrize(("status", "substatus", "message"), REFUSED)
    def test_refuses_a_status_and_substatus_that_do_not_go_together(
        self, status: int, substatus: int | None, message: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        group, fingerprint = issue(S.RESOLVED, None) if status != S.RESOLVED else issue()
        before = (group.status, group.substatus)
        caplog.set_level(logging.INFO, logger="regression_tracking")

        returned = process_status_change(
            StatusChange((fingerprint,), group.project_id, status, substatus)
        )

        assert returned is not None
        assert returned.id == group.id
        group.refresh_from_db()
        assert (group.status, group.substatus) == before
        assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.ERROR, message)]
        assert record_extra(caplog.records[0]) == {
            "project_id": group.project_id,
            "fingerprint": [fingerprint],
            "new_status": status,
            "new_substatus": substatus,
        }

    @pytest.mark.parametrize(("status", "substatus"), ACCEPTED)
    def test_applies_a_valid_status_change(self, status: int, substatus: int | None) -> None:
        group, fingerprint = issue(S.UNRESOLVED, SS.ONGOING)

        process_status_change(StatusChange((fingerprint,), group.project_id, status, substatus))

        group.refresh_from_db()
        assert (group.status, group.substatus) == (status, substatus)

    def test_unresolved_ongoing_is_applied_to_a_resolved_issue(self) -> None:
        group, fingerprint = issue(S.RESOLVED, None)

        process_status_change(
            StatusChange((fingerprint,), group.project_id, S.UNRESOLVED, SS.ONGOING)
        )

        group.refresh_from_db()
        assert (group.status, group.substatus) == (S.UNRESOLVED, SS.ONGOING)

    def test_the_state_the_issue_is_already_in_is_no_change_and_no_error(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """As upstream, the comparison comes first: even a pair it would refuse is a no-op."""
        group, fingerprint = issue(S.UNRESOLVED, None)
        caplog.set_level(logging.INFO, logger="regression_tracking")

        process_status_change(StatusChange((fingerprint,), group.project_id, S.UNRESOLVED, None))

        assert caplog.records == []

    def test_an_unsupported_status_is_logged_and_raises(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        group, fingerprint = issue()
        caplog.set_level(logging.INFO, logger="regression_tracking")

        with pytest.raises(NotImplementedError, match="Unsupported status: 3 None"):
            process_status_change(
                StatusChange((fingerprint,), group.project_id, S.PENDING_DELETION, None)
            )

        group.refresh_from_db()
        assert (group.status, group.substatus) == (S.UNRESOLVED, SS.ONGOING)
        assert [r.getMessage() for r in caplog.records] == [UNSUPPORTED_STATUS_MESSAGE]
