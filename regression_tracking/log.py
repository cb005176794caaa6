"""Log formatting that keeps the ``extra=`` fields of a record readable."""

from __future__ import annotations

import logging

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
