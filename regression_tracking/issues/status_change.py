"""Status changes: what the trend path produces, and the consumer that applies them.

In Sentry the detector calls ``produce_occurrence_to_kafka(payload_type=STATUS_CHANGE, …)`` and the
issue platform's consumer (``src/sentry/issues/status_change_consumer.py``) finds the group by
the hashed fingerprint and updates it, or drops the message when no group is found. Here the
producer is an interface (tests record the messages) and the consumer is a service.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol
from uuid import uuid4

from regression_tracking.fingerprints import hash_fingerprint
from regression_tracking.issues.grouping import lookup_issue_groups
from regression_tracking.models import Group, GroupStatus, GroupSubStatus
from regression_tracking.ops import metrics

logger = logging.getLogger("regression_tracking.services.status_change")

# Upstream's log message and counter for a status change whose group is not found.
DROPPED_GROUP_NOT_FOUND_MESSAGE = "status_change.dropped_group_not_found"
DROPPED_GROUP_NOT_FOUND_METRIC = "occurrence_ingest.status_change.dropped_group_not_found"


# Upstream's errors for a status change its update_status refuses (nothing is changed).
MISSING_SUBSTATUS_MESSAGE = "group.update_status.missing_substatus"
UNEXPECTED_SUBSTATUS_MESSAGE = "group.update_status.unexpected_substatus"
INVALID_SUBSTATUS_MESSAGE = "group.update_status.invalid_substatus"
UNSUPPORTED_STATUS_MESSAGE = "group.update_status.unsupported_status"

# The substatuses each settable status takes (upstream: IGNORED_SUBSTATUS_CHOICES for IGNORED,
# the ones with an activity type for UNRESOLVED; NEW is set on creation only). RESOLVED takes none.
VALID_SUBSTATUSES: dict[int, frozenset[int]] = {
    GroupStatus.IGNORED: frozenset(
        {
            GroupSubStatus.UNTIL_ESCALATING,
            GroupSubStatus.FOREVER,
            GroupSubStatus.UNTIL_CONDITION_MET,
        }
    ),
    GroupStatus.UNRESOLVED: frozenset(
        {GroupSubStatus.ESCALATING, GroupSubStatus.REGRESSED, GroupSubStatus.ONGOING}
    ),
}


def _new_id() -> str:
    return uuid4().hex


@dataclass(frozen=True, slots=True)
class StatusChange:
    """Upstream's ``StatusChangeMessage``: the regression's full (unhashed) fingerprint.

    ``id`` is a uuid4 hex, filled for each message (as upstream, by default); it is left out of
    equality here, so two changes to the same state compare equal. An empty fingerprint is
    refused, as upstream.
    """

    fingerprint: tuple[str, ...]
    project_id: int
    new_status: int
    new_substatus: int | None
    id: str = field(default_factory=_new_id, compare=False)

    def __post_init__(self) -> None:
        if not self.fingerprint:
            raise ValueError("fingerprint must be non-empty")


class StatusChangeProducer(Protocol):
    """Sends a status change to the issue platform (in Sentry: Kafka)."""

    def produce(self, status_change: StatusChange) -> None: ...


@dataclass
class RecordingProducer:
    """Keeps every status change produced, in order (tests, dry runs)."""

    produced: list[StatusChange] = field(default_factory=list)

    def produce(self, status_change: StatusChange) -> None:
        self.produced.append(status_change)


def process_status_change(status_change: StatusChange) -> Group | None:
    """The consumer: set the group's status (``update_status``), or drop the change (logged,
    counted) when the fingerprint has no live group, as upstream's
    ``process_status_change_message``. The group found is returned, changed or not."""
    fingerprint = tuple(hash_fingerprint(status_change.fingerprint))
    lookup = lookup_issue_groups([(status_change.project_id, fingerprint)])
    group = lookup.groups.get((status_change.project_id, fingerprint))
    if group is None:
        logger.info(
            DROPPED_GROUP_NOT_FOUND_MESSAGE,
            extra={
                "fingerprint": list(fingerprint),
                "new_status": status_change.new_status,
                "project_id": status_change.project_id,
            },
        )
        metrics.incr(DROPPED_GROUP_NOT_FOUND_METRIC)
        return None
    update_status(group, status_change)
    return group


def update_status(group: Group, status_change: StatusChange) -> None:
    """Set the group's status and substatus, as upstream's ``update_status``.

    Nothing happens when the group is already in that state. A pair upstream refuses is logged
    as an error and changes nothing: UNRESOLVED or IGNORED without a substatus, any other status
    with one, an IGNORED or UNRESOLVED substatus it does not take. A status it cannot set
    (deletion, merge, reprocessing) is logged and raises ``NotImplementedError``.
    """
    status, substatus = status_change.new_status, status_change.new_substatus
    if (group.status, group.substatus) == (status, substatus):
        return
    extra = {
        "project_id": status_change.project_id,
        "fingerprint": list(status_change.fingerprint),
        "new_status": status,
        "new_substatus": substatus,
    }
    if status in (GroupStatus.UNRESOLVED, GroupStatus.IGNORED):
        if substatus is None:
            logger.error(MISSING_SUBSTATUS_MESSAGE, extra=extra)
            return
        if substatus not in VALID_SUBSTATUSES[status]:
            logger.error(INVALID_SUBSTATUS_MESSAGE, extra=extra)
            return
    elif substatus is not None:
        logger.error(UNEXPECTED_SUBSTATUS_MESSAGE, extra=extra)
        return
    elif status != GroupStatus.RESOLVED:
        logger.error(UNSUPPORTED_STATUS_MESSAGE, extra=extra)
        raise NotImplementedError(f"Unsupported status: {status} {substatus}")
    group.status = status
    group.substatus = substatus
    group.save(update_fields=["status", "substatus"])
