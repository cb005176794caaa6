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

from regression_tracking.fingerprints import hash_fingerprint
from regression_tracking.issues.grouping import lookup_issue_groups
from regression_tracking.models import Group
from regression_tracking.ops import metrics

logger = logging.getLogger("regression_tracking.services.status_change")

# Upstream's log message and counter for a status change whose group is not found.
DROPPED_GROUP_NOT_FOUND_MESSAGE = "status_change.dropped_group_not_found"
DROPPED_GROUP_NOT_FOUND_METRIC = "occurrence_ingest.status_change.dropped_group_not_found"


@dataclass(frozen=True, slots=True)
class StatusChange:
    """Upstream's ``StatusChangeMessage``: the regression's full (unhashed) fingerprint."""

    fingerprint: tuple[str, ...]
    project_id: int
    new_status: int
    new_substatus: int | None


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
    """The consumer: set the group's status, or drop the change (logged, counted) when the
    fingerprint has no live group, as upstream's ``process_status_change_message``."""
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
    if (group.status, group.substatus) != (status_change.new_status, status_change.new_substatus):
        group.status = status_change.new_status
        group.substatus = status_change.new_substatus
        group.save(update_fields=["status", "substatus"])
    return group
