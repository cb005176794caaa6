"""A broken stdout or stderr never changes what a run does to the data.

A reader that goes away (``| head -1``, EPIPE), a closed descriptor (``>&-``) or a full device
(``> /dev/full``, ENOSPC) only loses the output: every batch still runs, the exit code is the one a
working stream gives, no traceback is printed, and the summary still reaches the log.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import subprocess
from typing import Any

import pytest
from django.core.management.base import OutputWrapper

from regression_tracking.management.streams import STREAM_BROKEN_MESSAGE, GuardedOutput
from tests.reliability import COMMAND, build_world, database_checksum, remaining_ids
from tests.utils import ROOT, manage_command, manage_env

ORPHANS = 3000
BATCH_SIZE = "250"
COMPLETED = "regression_tracking.cleanup.completed"


def _env() -> dict[str, str]:
    # INFO, so the run's own summary record can be looked for on stderr.
    return manage_env(REGRESSION_TRACKING_LOG_LEVEL="INFO", SENTRY_DSN="")


def _run(*args: str, **popen: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        manage_command(COMMAND, *args),
        env=_env(),
        cwd=ROOT,
        text=True,
        timeout=120,
        check=False,
        **popen,
    )


def _close_stdout() -> None:
    os.close(1)


def _assert_clean_stderr(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert "Exception ignored" not in stderr, stderr
    assert COMPLETED in stderr, stderr


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_a_reader_that_leaves_after_the_first_line_does_not_stop_the_run() -> None:
    world = build_world(orphans=ORPHANS, linked=20, recent=10, projects=3)
    process = subprocess.Popen(
        manage_command(COMMAND, "-v", "3", "--batch-size", BATCH_SIZE, "--sleep", "0.02"),
        env=_env(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    first = process.stdout.readline()
    # ``| head -1``: the reader goes away while the run still has batches to print.
    process.stdout.close()
    stderr = process.stderr.read()
    code = process.wait(timeout=120)
    assert first.startswith("batch 1: "), first
    _assert_clean_stderr(stderr)
    assert STREAM_BROKEN_MESSAGE in stderr
    assert code == 0
    assert remaining_ids() == {*world.linked, *world.recent}


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_a_closed_stdout_still_finishes_the_run_and_exits_0() -> None:
    world = build_world(orphans=ORPHANS, linked=20, recent=10, projects=3)
    done = _run(
        "--format",
        "json",
        "-v",
        "0",
        "--batch-size",
        BATCH_SIZE,
        preexec_fn=_close_stdout,
        stderr=subprocess.PIPE,
    )
    _assert_clean_stderr(done.stderr)
    assert done.returncode == 0
    assert remaining_ids() == {*world.linked, *world.recent}


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_a_dry_run_into_a_full_device_exits_0_and_changes_nothing() -> None:
    build_world(orphans=ORPHANS, linked=20, recent=10, projects=3)
    before = database_checksum()
    with open("/dev/full", "w") as full:
        done = _run(
            "--dry-run", "-v", "3", "--batch-size", BATCH_SIZE, stdout=full, stderr=subprocess.PIPE
        )
    _assert_clean_stderr(done.stderr)
    assert STREAM_BROKEN_MESSAGE in done.stderr
    assert done.returncode == 0
    assert database_checksum() == before


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_a_full_stderr_and_a_closed_stdout_still_finish_the_run() -> None:
    world = build_world(orphans=ORPHANS, linked=20, recent=10, projects=3)
    with open("/dev/full", "w") as full:
        done = _run("-v", "2", "--batch-size", BATCH_SIZE, preexec_fn=_close_stdout, stderr=full)
    assert done.returncode == 0
    assert remaining_ids() == {*world.linked, *world.recent}


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_a_run_that_leaves_work_exits_as_it_does_with_a_working_stdout() -> None:
    world = build_world(orphans=ORPHANS, linked=20, recent=10, projects=3)
    args = ("-v", "3", "--batch-size", BATCH_SIZE, "--max-rows", "1000")
    working = _run(*args, capture_output=True)
    assert working.returncode == 0, working.stderr
    assert len(remaining_ids() & set(world.eligible)) == ORPHANS - 1000
    with open("/dev/full", "w") as full:
        broken = _run(*args, stdout=full, stderr=subprocess.PIPE)
    _assert_clean_stderr(broken.stderr)
    assert broken.returncode == working.returncode
    assert len(remaining_ids() & set(world.eligible)) == ORPHANS - 2000


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("command", ["restore_regression_groups", "load_demo_data"])
def test_the_other_commands_do_not_traceback_on_a_closed_reader(command: str, tmp_path) -> None:
    if command == "restore_regression_groups":
        backup = tmp_path / "empty.jsonl"
        backup.write_text("")
        args: tuple[str, ...] = (str(backup),)
    else:
        args = ()
    read, write = os.pipe()
    os.close(read)
    done = subprocess.run(
        manage_command(command, *args),
        env=_env(),
        cwd=ROOT,
        text=True,
        timeout=120,
        check=False,
        stdout=write,
        stderr=subprocess.PIPE,
    )
    os.close(write)
    assert "Traceback" not in done.stderr, done.stderr
    assert "Exception ignored" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr


class _FailingStream(io.StringIO):
    def __init__(self, error: OSError) -> None:
        super().__init__()
        self.error = error
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        raise self.error


def test_a_broken_stream_warns_once_and_drops_the_rest(caplog) -> None:
    stream = _FailingStream(BrokenPipeError(errno.EPIPE, "Broken pipe"))
    out = GuardedOutput(stream, "stdout")
    with caplog.at_level(logging.WARNING, logger="regression_tracking.management.streams"):
        for line in ("one", "two", "three"):
            out.write(line)
        out.flush()
    assert out.broken
    assert stream.writes == 1
    assert [record.getMessage() for record in caplog.records] == [STREAM_BROKEN_MESSAGE]
    assert caplog.records[0].stream == "stdout"


def test_any_other_write_error_still_raises() -> None:
    out = GuardedOutput(_FailingStream(PermissionError(errno.EACCES, "denied")), "stdout")
    with pytest.raises(PermissionError):
        out.write("line")
    assert not out.broken


def test_a_working_stream_gets_what_django_writes() -> None:
    guarded, plain = io.StringIO(), io.StringIO()
    for stream, wrapper in ((guarded, GuardedOutput(guarded, "stdout")), (plain, None)):
        target = wrapper or OutputWrapper(stream)
        target.write("a line")
        target.write("no ending", ending="")
        target.write("styled", style_func=str.upper)
    assert guarded.getvalue() == plain.getvalue() == "a line\nno endingSTYLED\n"
