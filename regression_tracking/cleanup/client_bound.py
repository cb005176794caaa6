"""The client's bound on a run's database waits: a server that stops answering cannot hold it.

The server bounds its own statements (``lock_timeout``, ``statement_timeout``) and notices a
vanished client through TCP keepalives, but all of that needs the server, or the network to it,
to answer. When it goes silent (a partition, a relay that keeps its sockets open and forwards
nothing), a statement's reply never comes, and neither does a cancel request's.

So, once the run has been asked to stop (a signal, or ``--max-runtime`` has passed) and it is
still going ``CANCEL_AFTER_SECONDS`` later, the statement in flight is cancelled, and if the run
is still going ``DROP_AFTER_SECONDS`` after that, the connection is dropped: its socket is shut
down, so the blocked read fails at once. A cancelled batch rolls back; a dropped one may or may
not have committed (its COMMIT may have reached the server), which the command then says.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

from django.db import connections

# How long a run asked to stop may go on before its statement is cancelled: a batch in flight
# normally finishes well within it.
CANCEL_AFTER_SECONDS = 2.0
# How long after the cancel before the connection is dropped (also the cancel request's own bound).
DROP_AFTER_SECONDS = 3.0
# How often the watcher looks.
WATCH_SECONDS = 0.1
# After the drop, Django reconnects once to restore autocommit (its rollback failed): that
# connection attempt gives up after this long instead of waiting on the silent server. libpq's
# connect_timeout takes whole seconds, 2 at least.
RECONNECT_TIMEOUT_SECONDS = 2


class ClientBound:
    """Watches one run on PostgreSQL; ``reason`` says why it was asked to stop, ``cancelled`` and
    ``dropped`` what the watcher had to do. Elsewhere (SQLite) it does nothing."""

    def __init__(
        self,
        using: str,
        *,
        should_stop: Callable[[], bool],
        deadline: float | None,
        clock: Callable[[], float],
    ) -> None:
        self.database = connections[using]
        self.should_stop = should_stop
        self.deadline = deadline
        self.clock = clock
        self.reason: str | None = None
        self.cancelled = False
        self.dropped = False
        self._finished = threading.Event()
        self._watcher: threading.Thread | None = None
        self._options = dict(self.database.settings_dict.get("OPTIONS") or {})

    def __enter__(self) -> ClientBound:
        if self.database.vendor == "postgresql":
            self._watcher = threading.Thread(target=self._watch, daemon=True)
            self._watcher.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._finished.set()
        if self._watcher is not None:
            self._watcher.join()
        if self.dropped:
            self.database.settings_dict["OPTIONS"] = self._options

    def _stop_reason(self) -> str | None:
        if self.should_stop():
            return "interrupted"
        if self.deadline is not None and self.clock() >= self.deadline:
            return "max_runtime"
        return None

    def _watch(self) -> None:
        asked_at = None
        while not self._finished.wait(WATCH_SECONDS):
            now = time.monotonic()
            if asked_at is None:
                self.reason = self._stop_reason()
                if self.reason is not None:
                    asked_at = now
            elif not self.cancelled and now - asked_at >= CANCEL_AFTER_SECONDS:
                self.cancelled = True
                self._cancel()
            elif self.cancelled and now - asked_at >= CANCEL_AFTER_SECONDS + DROP_AFTER_SECONDS:
                self.dropped = True
                self._drop()
                return

    def _cancel(self) -> None:
        raw = self.database.connection
        if raw is None:
            return
        try:
            raw.cancel_safe(timeout=DROP_AFTER_SECONDS)
        except Exception:
            # The cancel went unanswered too (a silent server): dropping is next.
            return

    def _drop(self) -> None:
        raw = self.database.connection
        if raw is None:
            return
        self.database.settings_dict["OPTIONS"] = {
            **self._options,
            "connect_timeout": RECONNECT_TIMEOUT_SECONDS,
        }
        try:
            # A duplicate of the connection's socket: shutting it down ends the connection's
            # blocked read at once; the connection itself is closed by its owner.
            with socket.fromfd(raw.pgconn.socket, socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            return
