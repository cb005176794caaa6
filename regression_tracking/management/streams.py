"""Command output that can break without breaking the command.

A reader that goes away (``| head -1``: EPIPE), a closed descriptor (``>&-``) or a full device
(ENOSPC) loses the output, never the work: a write or flush that fails marks its stream broken,
logs one WARNING and drops everything after it, so every batch still runs and the exit code says
what happened to the data. The run's own log records (its summary among them) still go out.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO, cast

from django.core.management.base import BaseCommand, OutputWrapper

logger = logging.getLogger(__name__)

STREAM_BROKEN_MESSAGE = "regression_tracking.output.stream_broken"

# The errors of a stream that can take no more output (the reader left, the device is full, the
# descriptor was closed, the terminal hung up); any other OSError is a real fault.
BROKEN_STREAM_ERRNOS = frozenset({errno.EPIPE, errno.ENOSPC, errno.EBADF, errno.EIO})


def _is_broken_stream_error(error: BaseException, stream: object) -> bool:
    if isinstance(error, OSError):
        return isinstance(error, BrokenPipeError) or error.errno in BROKEN_STREAM_ERRNOS
    # A file object closed under the command raises ValueError; any other ValueError is a bug.
    return isinstance(error, ValueError) and bool(getattr(stream, "closed", False))


class GuardedOutput(OutputWrapper):
    """A command's ``OutputWrapper`` whose failed write or flush drops the rest of the output.

    Output is byte for byte what ``OutputWrapper`` writes while the stream works.
    """

    def __init__(self, out: TextIO | None, name: str, ending: str = "\n") -> None:
        self.stream_name = name
        self.broken = False
        self._stream = out
        super().__init__(out, ending=ending)  # type: ignore[arg-type]
        if out is None:
            # Python found no open descriptor at start (``>&-``): there is nothing to write to.
            self._mark_broken(None)

    @classmethod
    def around(cls, wrapper: OutputWrapper, name: str) -> GuardedOutput:
        """The same stream, ending and style as ``wrapper``, guarded."""
        if isinstance(wrapper, GuardedOutput):
            return wrapper
        guarded = cls(cast("TextIO | None", wrapper._out), name, ending=wrapper.ending)
        guarded.style_func = wrapper.style_func
        return guarded

    def isatty(self) -> bool:
        if self.broken:
            return False
        try:
            return super().isatty()
        except ValueError:
            return False

    def write(  # type: ignore[override]
        self,
        msg: str = "",
        style_func: Callable[[str], str] | None = None,
        ending: str | None = None,
    ) -> None:
        if self.broken:
            return
        try:
            super().write(msg, style_func=style_func, ending=ending)
        except (OSError, ValueError) as error:
            if not _is_broken_stream_error(error, self._stream):
                raise
            self._mark_broken(error)

    def flush(self) -> None:
        if self.broken:
            return
        try:
            super().flush()
        except (OSError, ValueError) as error:
            if not _is_broken_stream_error(error, self._stream):
                raise
            self._mark_broken(error)

    def _mark_broken(self, error: BaseException | None) -> None:
        self.broken = True
        self._silence_descriptor(error)
        logger.warning(
            STREAM_BROKEN_MESSAGE,
            extra={
                "stream": self.stream_name,
                "error": "closed" if error is None else str(error) or type(error).__name__,
            },
        )

    def _silence_descriptor(self, error: BaseException | None) -> None:
        """Point the process's own broken stdout or stderr at /dev/null.

        Python flushes sys.stdout and sys.stderr again at exit: on the broken descriptor that
        prints "Exception ignored ... BrokenPipeError" and exits 120. The Python documentation's
        answer to SIGPIPE is this redirect. Only a descriptor whose write failed is redirected
        (EBADF: its number is free, so nothing else is hidden): a closed file object's number, or
        the number of a descriptor closed before start, may belong to another file by now.
        """
        if not isinstance(error, OSError):
            return
        if self._stream is None or self._stream not in (sys.stdout, sys.stderr):
            return
        try:
            descriptor = self._stream.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY)
        except (OSError, ValueError):
            return
        try:
            os.dup2(devnull, descriptor)
        except OSError:
            pass
        finally:
            os.close(devnull)


class GuardedOutputCommand(BaseCommand):
    """A command whose stdout and stderr may break without stopping, shortening or failing it."""

    def execute(self, *args: Any, **options: Any) -> Any:
        # Django wraps the streams it is given in plain OutputWrappers; wrap them here instead.
        for name in ("stdout", "stderr"):
            given = options.pop(name, None)
            if given:
                setattr(self, name, OutputWrapper(given))
        self.stdout = GuardedOutput.around(self.stdout, "stdout")
        self.stderr = GuardedOutput.around(self.stderr, "stderr")
        try:
            return super().execute(*args, **options)
        finally:
            # Flushed now, so a stream that breaks on its last bytes is found (and silenced)
            # before the interpreter's own flush at exit.
            self.stdout.flush()
            self.stderr.flush()
