"""Log formatting that keeps the ``extra=`` fields of a record readable."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
) | {"message", "asctime", "taskName"}


def record_extra(record: logging.LogRecord) -> dict[str, object]:
    """The fields a caller passed in ``extra=``, in the order they were set."""
    return {key: value for key, value in vars(record).items() if key not in _STANDARD_ATTRS}


class KeyValueFormatter(logging.Formatter):
    """``LEVEL logger: message key=value …``: the message stays constant, the context follows it."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = " ".join(f"{key}={value!r}" for key, value in record_extra(record).items())
        return f"{line} {fields}" if fields else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp (ISO-8601, UTC), level, logger, message, then the extras.

    Values JSON cannot hold are written as their ``str``. An extra field named like one of the
    fixed keys is dropped rather than allowed to hide the record's own value. A traceback, when the
    record has one, goes under ``exc_info``, and a stack under ``stack_info``.
    """

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record_extra(record).items():
            document.setdefault(key, value)
        if record.exc_info:
            document["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            document["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(document, default=str)
