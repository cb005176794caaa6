"""The operator's output files (``--backup``, ``--metrics-textfile``): checked before anything runs.

Only looked at here (``stat``, and a nameless probe file in the folder): nothing is opened,
created or changed. A path is judged by what it resolves to, so a symlink is followed to its
target: that target is what a backup appends to and what a textfile replaces.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# What a path that is not a regular file is, by its stat mode, in the words of an error message.
_SPECIAL_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class OutputFileError(ValueError):
    """An output path that cannot be used; ``usage`` when the options themselves disagree."""

    def __init__(self, option: str | None, problem: str, *, usage: bool = False) -> None:
        super().__init__(f"{option}: {problem}" if option else problem)
        self.option = option
        self.problem = problem
        self.usage = usage


@dataclass(frozen=True, slots=True)
class OutputFile:
    option: str | None
    # As the operator spelled it, for messages.
    path: str
    # Symlinks resolved: the file that is written.
    target: Path
    # (st_dev, st_ino) when the target exists.
    identity: tuple[int, int] | None


def special_kind(mode: int) -> str | None:
    """``"a FIFO (named pipe)"`` and the like for a file that is not regular; None if it is."""
    for test, kind in _SPECIAL_KINDS:
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) else "not a regular file"


def check_output_file(path: str | os.PathLike[str], *, option: str | None = None) -> OutputFile:
    """``path`` is a regular file, or can be created in an existing folder that takes new files.

    The folder is tried with a nameless temporary file rather than ``os.access``, which says yes to
    root on folders that refuse every new file (``/proc``, a read-only mount).
    """
    spelled = os.fspath(path)
    target = Path(os.path.realpath(spelled))
    try:
        status = os.stat(target)
    except FileNotFoundError:
        status = None
    except OSError as error:
        raise OutputFileError(option, f"cannot write to {spelled}: {error.strerror}") from None
    if status is not None:
        kind = special_kind(status.st_mode)
        if kind is not None:
            raise OutputFileError(option, f"{spelled} is {kind}")
        if not os.access(target, os.W_OK):
            raise OutputFileError(option, f"cannot write to {spelled}: Permission denied")
        return OutputFile(option, spelled, target, (status.st_dev, status.st_ino))
    if not target.parent.is_dir():
        raise OutputFileError(option, f"cannot write to {spelled}: No such file or directory")
    try:
        with tempfile.TemporaryFile(dir=target.parent):
            pass
    except OSError as error:
        raise OutputFileError(option, f"cannot write to {spelled}: {error.strerror}") from None
    return OutputFile(option, spelled, target, None)


def check_output_files(paths: Mapping[str, str | None]) -> dict[str, OutputFile]:
    """Each named path checked, then all of them as one set: no two may name the same file.

    Two paths are the same file when they resolve to one path (``..``, a symlink) or, existing,
    to one inode (a hard link). That is a usage error: one output would overwrite the other.
    """
    checked = {
        option: check_output_file(path, option=option)
        for option, path in paths.items()
        if path is not None
    }
    files = list(checked.values())
    for index, first in enumerate(files):
        for second in files[index + 1 :]:
            same_inode = first.identity is not None and first.identity == second.identity
            if first.target == second.target or same_inode:
                raise OutputFileError(
                    f"{first.option} and {second.option}",
                    f"{first.path} and {second.path} are the same file; give each its own",
                    usage=True,
                )
    return checked
