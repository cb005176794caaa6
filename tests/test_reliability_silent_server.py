"""A database that stops answering: a signal or ``--max-runtime`` still ends the run in seconds.

The command reaches PostgreSQL through a relay that can go silent: it keeps every socket open and
forwards nothing more, in either direction, as a partition or a stuck proxy does. TCP keepalives
never fire against it (the relay's own kernel answers them), and a cancel request, a connection of
its own through the same relay, goes unanswered too: only the client's own bound ends the wait.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection

from regression_tracking.cleanup.client_bound import (
    CANCEL_AFTER_SECONDS,
    DROP_AFTER_SECONDS,
    RECONNECT_TIMEOUT_SECONDS,
)
from tests.reliability import (
    CommandProcess,
    build_world,
    record_figures,
    remaining_ids,
    wait_for_no_backends,
)
from tests.utils import database_url

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]

# From the stop (the signal, or the end of --max-runtime): the cancel, the drop, Django's one
# reconnect attempt, then the process's own exit.
ENDS_WITHIN_SECONDS = CANCEL_AFTER_SECONDS + DROP_AFTER_SECONDS + RECONNECT_TIMEOUT_SECONDS + 3


class SilentRelay:
    """A TCP relay to the test database that ``go_silent()`` turns into a black hole.

    The database is reached at ``host:port``, or on its Unix socket when ``host`` is a directory
    (the test command's embedded server listens only there).
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.silent = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.application_names: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = self._connect()
            self.sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _connect(self) -> socket.socket:
        host, port = self.target
        if not host.startswith("/"):
            return socket.create_connection(self.target)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.connect(os.path.join(host, f".s.PGSQL.{port}"))
        return server

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if not self.silent.is_set():
                    sink.sendall(data)
        except OSError:
            return

    def go_silent(self) -> None:
        self.silent.set()

    def close(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            # shutdown, not only close: a pump blocked in recv() keeps a closed socket open.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@pytest.fixture
def relay() -> Iterator[SilentRelay]:
    settings = connection.settings_dict
    relay = SilentRelay(settings["HOST"] or "localhost", int(settings["PORT"] or 5432))
    try:
        yield relay
    finally:
        relay.close()
        # The relay's sockets to the server are closed now: the server ends those sessions
        # (and their locks) before the next test starts.
        for name in relay.application_names:
            wait_for_no_backends(name)


def relayed_url(relay: SilentRelay, application_name: str) -> str:
    parts = urlsplit(database_url(application_name=application_name))
    netloc = parts.netloc.rsplit("@", 1)[0] + f"@127.0.0.1:{relay.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def start_silenced_run(relay: SilentRelay, *args: str) -> CommandProcess:
    """A slow real run through the relay, which goes silent after its first batch."""
    name = f"rt_silent_{os.getpid()}_{time.monotonic_ns()}"
    relay.application_names.append(name)
    run = CommandProcess(
        "-v",
        "2",
        "--batch-size",
        "1",
        "--sleep",
        "0.5",
        *args,
        application_name=name,
        url=relayed_url(relay, name),
    )
    for line in run.lines(timeout=60):
        if line.startswith("batch 1:"):
            break
    else:
        run.kill()
        pytest.fail(f"the run printed no first batch: {run.stderr}")
    relay.go_silent()
    return run


def ended_within_bound(run: CommandProcess, stopped_at: float) -> float:
    code = run.wait(timeout=60)
    took = time.monotonic() - stopped_at
    assert code == 1, run.stderr
    assert took < ENDS_WITHIN_SECONDS, (took, run.stderr)
    (error,) = run.stderr.strip().splitlines()
    assert "the database did not answer within 5s of the stop" in error
    assert "connection dropped" in error
    assert "finished batches stay done" in error
    return took


def test_a_signal_ends_a_run_whose_database_went_silent(relay) -> None:
    world = build_world(orphans=40, linked=5, recent=5)
    run = start_silenced_run(relay)
    time.sleep(0.5)
    run.process.send_signal(signal.SIGTERM)
    took = ended_within_bound(run, time.monotonic())
    # The summary still reaches stdout, and says why the run stopped.
    assert "stop reason: interrupted\n" in run.stdout
    assert "deleted: 1\n" in run.stdout
    assert len(set(world.eligible) - remaining_ids()) >= 1
    record_figures("silent_server", signal_ended_seconds=round(took, 1))


def test_max_runtime_ends_a_run_whose_database_went_silent(relay) -> None:
    build_world(orphans=40, linked=5, recent=5)
    run = start_silenced_run(relay, "--max-runtime", "3s")
    # The run's deadline is 3 s after its own start, a little after the process's.
    took = ended_within_bound(run, run.started + 3)
    assert "stop reason: max_runtime\n" in run.stdout
    record_figures("silent_server", max_runtime_ended_seconds=round(took, 1))
