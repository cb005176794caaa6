"""scripts/debian_packages: what `make install`/`make test` do about missing Debian packages.

Installing is not exercised here (it would change the machine); the two other answers are: nothing
to do when every check passes, and, for a user who can neither be root nor use passwordless sudo,
one line naming the exact command to run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils import ROOT

SCRIPT = ROOT / "scripts" / "debian_packages"


def run_script(*args: str, unprivileged: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the script; with ``unprivileged`` (a scratch dir), as a user without root or sudo.

    A ``sudo`` that refuses (as ``sudo -n`` does without a passwordless rule) comes first on PATH,
    and as root the script runs as ``nobody`` (util-linux's setpriv).
    """
    command = [str(SCRIPT), *args]
    path = os.environ["PATH"]
    if unprivileged is not None:
        # nobody must reach the script: the work tree may sit in a folder only root can enter.
        script = unprivileged / SCRIPT.name
        shutil.copy2(SCRIPT, script)
        command = [str(script), *args]
        sudo = unprivileged / "sudo"
        sudo.write_text("#!/bin/sh\necho 'sudo: a password is required' >&2\nexit 1\n")
        sudo.chmod(0o755)
        unprivileged.chmod(0o755)
        path = f"{unprivileged}{os.pathsep}{path}"
        if os.geteuid() == 0:
            assert shutil.which("setpriv"), "setpriv (util-linux) runs the script as nobody"
            command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
    return subprocess.run(
        command,
        env={"PATH": path},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_nothing_is_done_when_every_check_passes() -> None:
    result = run_script("make test", "true", "chromium", "test -x /bin/sh", "time")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A scratch folder every user can enter (pytest's tmp_path is under a root-only folder)."""
    folder = Path(tempfile.mkdtemp(prefix="debian-packages-", dir="/tmp"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def test_without_root_or_sudo_it_prints_the_command_to_run(open_dir: Path) -> None:
    result = run_script(
        "make test", "false", "chromium", "true", "time", "false", "python3-venv",
        unprivileged=open_dir,
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "make test needs the Debian packages: chromium python3-venv; run: "
        "sudo apt-get update && sudo apt-get install -y chromium python3-venv\n"
    )
