"""A PostgreSQL primary with one streaming standby, both on 127.0.0.1, for the replication tests.

Built from the binaries of the PostgreSQL the suite runs on: ``initdb`` for the primary,
``pg_basebackup -R`` for the standby (which then streams from it), ``pg_ctl`` to start and stop
both. The clusters live in a temporary folder and are removed on exit. PostgreSQL refuses to run
as root, so as root the binaries run as the ``postgres`` user.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

POSTGRES_USER = "postgres"
START_TIMEOUT_SECONDS = 60
# The standby reports its replay position every second, so the primary's view follows closely.
STANDBY_SETTINGS = "wal_receiver_status_interval = 1s\nhot_standby = on\n"


def binaries(server_version_num: int) -> Path:
    """The folder holding initdb, pg_ctl and pg_basebackup for a server of this version: Debian's
    for that major version, else the embedded server's (pgserver), else pg_config's."""
    tried = []
    for folder in _bin_folders(server_version_num // 10_000):
        if all((folder / name).is_file() for name in ("initdb", "pg_ctl", "pg_basebackup")):
            return folder
        tried.append(str(folder))
    raise RuntimeError(f"no initdb, pg_ctl and pg_basebackup in {', '.join(tried)}")


def _bin_folders(major: int) -> Iterator[Path]:
    yield Path(f"/usr/lib/postgresql/{major}/bin")
    try:
        import pgserver
    except ImportError:
        pass
    else:
        yield Path(pgserver.__file__).parent / "pginstall" / "bin"
    if pg_config := shutil.which("pg_config"):
        bindir = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        yield Path(bindir.stdout.strip())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class StreamingPair:
    root: Path
    bin: Path
    primary_port: int
    standby_port: int

    @property
    def primary_url(self) -> str:
        return f"postgres://{POSTGRES_USER}@127.0.0.1:{self.primary_port}/postgres"

    @property
    def standby_url(self) -> str:
        return f"postgres://{POSTGRES_USER}@127.0.0.1:{self.standby_port}/postgres"

    def primary(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.primary_url, autocommit=True)

    def standby(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.standby_url, autocommit=True)

    def pause_replay(self) -> None:
        """Stop the standby replaying (it keeps receiving WAL), once it has replayed everything."""
        self.wait_until_caught_up()
        with self.standby() as standby:
            standby.execute("SELECT pg_wal_replay_pause()")
            _wait_for(
                lambda: (
                    standby.execute("SELECT pg_get_wal_replay_pause_state()").fetchone()
                    == ("paused",)
                ),
                "the standby to pause its replay",
            )

    def resume_replay(self) -> None:
        with self.standby() as standby:
            standby.execute("SELECT pg_wal_replay_resume()")

    def wait_until_caught_up(self) -> None:
        with self.primary() as primary:
            _wait_for(
                lambda: (
                    primary.execute(
                        "SELECT count(*) FROM pg_stat_replication"
                        " WHERE replay_lsn >= pg_current_wal_lsn()"
                    ).fetchone()
                    == (1,)
                ),
                "the standby to replay everything",
            )


def _wait_for(condition: Any, what: str, timeout: float = START_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:g}s for {what}")
        time.sleep(0.1)


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", POSTGRES_USER, "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str]) -> None:
    done = subprocess.run(_as_postgres(command), capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr}")


@contextmanager
def streaming_pair(server_version_num: int) -> Iterator[StreamingPair]:
    """Start a primary and a standby streaming from it; stop both and remove them on exit."""
    bin_dir = binaries(server_version_num)
    root = Path(tempfile.mkdtemp(prefix="regression-tracking-standby-"))
    if os.geteuid() == 0:
        shutil.chown(root, user=POSTGRES_USER)
    pair = StreamingPair(root=root, bin=bin_dir, primary_port=free_port(), standby_port=free_port())
    primary, standby = root / "primary", root / "standby"
    started = []
    try:
        _run(
            [
                *(str(bin_dir / "initdb"), "-D", str(primary), "-U", POSTGRES_USER),
                *("--auth=trust", "--no-sync", "--encoding=UTF8", "--locale=C"),
            ]
        )
        with (primary / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {pair.primary_port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{root}'\nwal_level = replica\n"
                "max_wal_senders = 4\nfsync = off\n"
            )
        with (primary / "pg_hba.conf").open("a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")
        _start(pair, primary)
        started.append(primary)
        _run(
            [
                *(str(bin_dir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(pair.primary_port)),
                *("-U", POSTGRES_USER, "-D", str(standby), "-R", "-X", "stream", "--no-sync"),
            ]
        )
        with (standby / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {pair.standby_port}\n{STANDBY_SETTINGS}")
        _start(pair, standby)
        started.append(standby)
        pair.wait_until_caught_up()
        yield pair
    finally:
        for data in reversed(started):
            _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)


def _start(pair: StreamingPair, data: Path) -> None:
    _run(
        [
            *(str(pair.bin / "pg_ctl"), "-D", str(data), "-l", f"{data}.log", "-w"),
            *("-t", str(START_TIMEOUT_SECONDS), "start"),
        ]
    )
