"""``manage.py`` as a real subprocess: wall time, peak RSS and the command's JSON result."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLEANUP_COMMAND = "cleanup_orphaned_regressions"
# How often a running command is checked for its end: the error this adds to its wall time.
POLL_SECONDS = 0.002
MANAGE = str(ROOT / "manage.py")
# GNU time, which reports a command's peak RSS.
TIME = "/usr/bin/time"


@dataclass(frozen=True, slots=True)
class CommandRun:
    # Wall time of the whole process, start-up included.
    seconds: float
    # Peak resident set size of the process, as GNU time reports it.
    max_rss_mb: float
    # The command's --format json output (empty for commands without one).
    result: dict[str, Any]


def manage_env(database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REGRESSION_TRACKING_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


def _start(
    args: Sequence[str], database_url: str, output: Any, rss_path: Path
) -> subprocess.Popen[bytes]:
    # GNU time forks the command from its own small process. The command cannot report its peak
    # RSS from here: a child spawned from this (large) process starts with this process's
    # high-water mark (Linux hands a vfork parent's peak RSS to the child at exec).
    return subprocess.Popen(
        [TIME, "--format", "%M", "--output", str(rss_path), sys.executable, MANAGE, *args],
        cwd=ROOT,
        env=manage_env(database_url),
        stdout=output,
        stderr=subprocess.STDOUT,
    )


def _result(process: subprocess.Popen[bytes], output: Any, args: Sequence[str]) -> dict[str, Any]:
    output.seek(0)
    text = output.read().decode()
    if process.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} exited {process.returncode}:\n{text}")
    lines = [line for line in text.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def _max_rss_mb(rss_path: Path) -> float:
    # GNU time prints the peak in KiB; the file's last line holds it.
    return int(rss_path.read_text().split()[-1]) / 1024


def run_manage(args: Sequence[str], database_url: str) -> CommandRun:
    """Run ``manage.py *args`` to completion; raises with its output when it fails."""
    [run] = run_parallel([args], database_url)
    return run


def run_parallel(commands: Sequence[Sequence[str]], database_url: str) -> list[CommandRun]:
    """Start every command at once; each run's seconds is from the common start to its own end."""
    with tempfile.TemporaryDirectory(prefix="benchmark-") as folder, ExitStack() as files:
        outputs = [
            files.enter_context(Path(folder, f"{i}.out").open("w+b")) for i in range(len(commands))
        ]
        rss_paths = [Path(folder, f"{i}.rss") for i in range(len(commands))]
        started = time.perf_counter()
        processes = [
            _start(args, database_url, output, rss_path)
            for args, output, rss_path in zip(commands, outputs, rss_paths, strict=True)
        ]
        ended: dict[int, float] = {}
        while len(ended) < len(processes):
            for index, process in enumerate(processes):
                if index not in ended and process.poll() is not None:
                    ended[index] = time.perf_counter()
            time.sleep(POLL_SECONDS)
        return [
            CommandRun(
                seconds=ended[i] - started,
                result=_result(process, output, args),
                max_rss_mb=_max_rss_mb(rss_path),
            )
            for i, (process, output, rss_path, args) in enumerate(
                zip(processes, outputs, rss_paths, commands, strict=True)
            )
        ]


def startup_seconds(database_url: str, repeat: int) -> float:
    """The median wall time of ``manage.py check``: what every command pays before its work."""
    return statistics.median(run_manage(["check"], database_url).seconds for _ in range(repeat))


def cleanup_args(*extra: str, batch_size: int) -> list[str]:
    return [CLEANUP_COMMAND, "--format", "json", "--batch-size", str(batch_size), *extra]
