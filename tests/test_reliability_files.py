"""The operator's files: checked as one set before anything runs, never touched by a refused run.

Output files are the operator's: never replace a file that is not ours, never truncate
a line that parses, never let two outputs name one file; nothing is touched before the run holds
its lock. Each case below is one an operator met (a FIFO as --backup among them), with variants.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from regression_tracking.cleanup.backup import row_to_dict
from regression_tracking.cleanup.locking import CLEANUP_LOCK_CLASS
from regression_tracking.models import RegressionGroup
from regression_tracking.services import BackupWriteError, BackupWriter, read_backup
from tests.reliability import (
    COMMAND,
    backup_ids,
    build_world,
    database_checksum,
    record_figures,
    regression_rows,
    remaining_ids,
)
from tests.utils import other_connection, run_manage

pytestmark = pytest.mark.django_db

PROBES: dict[str, int] = {}


def _probed(kind: str, count: int = 1) -> None:
    PROBES[kind] = PROBES.get(kind, 0) + count
    record_figures("output_files", **PROBES)


@pytest.fixture
def world() -> Any:
    return build_world(orphans=5, linked=2, recent=1, discarded=1, projects=2)


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every entry of ``folder``: its mode and, for a regular file, its bytes."""
    entries = {}
    for entry in sorted(folder.iterdir()):
        mode = entry.lstat().st_mode
        content = entry.read_bytes() if stat.S_ISREG(mode) else None
        entries[entry.name] = (stat.S_IFMT(mode), content)
    return entries


def _row_lines(ids: list[int]) -> bytes:
    rows = RegressionGroup.objects.filter(id__in=ids).order_by("id")
    return b"".join(
        json.dumps(row_to_dict(row), ensure_ascii=False).encode() + b"\n" for row in rows
    )


# Two options, one file.


def _same_file_spellings(folder: Path) -> list[tuple[str, str, str]]:
    """(name, backup path, textfile path) naming one file in different ways."""
    (folder / "sub").mkdir()
    target = folder / "out.jsonl"
    target.write_bytes(b"")
    os.link(target, folder / "hardlink")
    (folder / "symlink").symlink_to(target)
    missing = folder / "new.prom"
    return [
        ("the same path", str(target), str(target)),
        ("through ..", str(target), str(folder / "sub" / ".." / "out.jsonl")),
        ("a hard link", str(target), str(folder / "hardlink")),
        ("a symlink", str(folder / "symlink"), str(target)),
        ("a file that does not exist yet", str(missing), str(folder / "sub" / ".." / "new.prom")),
    ]


@pytest.mark.parametrize("dry_run", [False, True])
def test_backup_and_textfile_naming_one_file_is_a_usage_error(
    world, run_cli, tmp_path, dry_run
) -> None:
    """The textfile was renamed over the backup, and every line of it was gone."""
    cases = _same_file_spellings(tmp_path)
    before = database_checksum()
    files = _snapshot(tmp_path)
    for name, backup, textfile in cases:
        args = ["--backup", backup, "--metrics-textfile", textfile, *(["--dry-run"] * dry_run)]
        code, out, err = run_cli(*args)
        assert (code, out) == (2, ""), (name, err)
        assert "--backup and --metrics-textfile: " in err, name
        assert "are the same file" in err, name
        assert "Traceback" not in err
        assert database_checksum() == before, name
        assert _snapshot(tmp_path) == files, name
    _probed("same file through two options", len(cases))


# Files that are not regular files.


@pytest.fixture
def special_files(tmp_path: Path) -> Iterator[dict[str, Path]]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    (tmp_path / "to-null").symlink_to("/dev/null")
    (tmp_path / "folder").mkdir()
    yield {
        "a FIFO (named pipe)": fifo,
        "a character device": Path("/dev/null"),
        "a socket": sock_path,
        "a directory": tmp_path / "folder",
        # A symlink is followed: what counts is what it points at.
        "a character device ": tmp_path / "to-null",
    }
    server.close()


@pytest.mark.parametrize("option", ["--backup", "--metrics-textfile"])
@pytest.mark.parametrize("dry_run", [False, True])
def test_special_files_are_refused_before_anything_is_done(
    world, run_cli, tmp_path, special_files, option, dry_run
) -> None:
    """/dev/null replaced by a regular file; a FIFO hung the run forever."""
    before = database_checksum()
    files = _snapshot(tmp_path)
    for kind, path in special_files.items():
        code, out, err = run_cli(option, str(path), *(["--dry-run"] * dry_run))
        assert (code, out) == (1, ""), (kind, err)
        assert f"CommandError: {option}: {path} is {kind.strip()}\n" in err
        assert database_checksum() == before
        assert _snapshot(tmp_path) == files
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    _probed("special files refused", len(special_files))


def test_textfile_through_a_symlink_replaces_the_target_and_keeps_the_link(
    world, run_cli, tmp_path
) -> None:
    target = tmp_path / "real.prom"
    target.write_text("old\n")
    link = tmp_path / "cleanup.prom"
    link.symlink_to(target)
    code, _out, err = run_cli("--metrics-textfile", str(link))
    assert code == 0, err
    assert link.is_symlink()
    assert "regression_tracking_orphans_deleted_total 5.0" in target.read_text()
    # Written beside the target and renamed: no temporary file is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cleanup.prom", "real.prom"]
    _probed("textfile through a symlink")


# A refused run, and a run that cannot connect, change no file.


def _operator_files(folder: Path, world: Any) -> dict[str, Path]:
    """A backup whose last line is cut, one whose last row lost its newline, a config file, a
    textfile: what a run that never got going must leave byte for byte as it was."""
    cut = folder / "cut.jsonl"
    cut.write_bytes(_row_lines(world.eligible[:2]) + b'{"id": 12, "date_ad')
    no_newline = folder / "no-newline.jsonl"
    no_newline.write_bytes(_row_lines(world.eligible[:2])[:-1])
    config = folder / "config.json"
    config.write_bytes(b'{"retention": "30d", "enabled": true}')
    textfile = folder / "cleanup.prom"
    textfile.write_bytes(b"regression_tracking_orphans_deleted_total 7.0\n")
    return {"cut": cut, "no_newline": no_newline, "config": config, "textfile": textfile}


@pytest.mark.postgresql
def test_a_refused_run_exit_3_changes_no_file(world, run_cli, tmp_path) -> None:
    """A refused run had truncated the backup's last line (a JSON config
    became 0 bytes) and emptied the textfile."""
    files = _operator_files(tmp_path, world)
    before = database_checksum()
    snapshot = _snapshot(tmp_path)
    with other_connection() as other:
        other.execute("SELECT pg_advisory_lock(%s, 0)", [CLEANUP_LOCK_CLASS])
        for backup in ("cut", "no_newline", "config"):
            for dry_run in ([], ["--dry-run"]):
                code, out, err = run_cli(
                    "--backup",
                    str(files[backup]),
                    "--metrics-textfile",
                    str(files["textfile"]),
                    *dry_run,
                )
                assert (code, out) == (3, ""), err
                assert "nothing was changed" in err
                assert _snapshot(tmp_path) == snapshot, backup
    assert database_checksum() == before
    _probed("refused runs (exit 3) with operator files", 6)


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_a_run_that_cannot_connect_changes_no_file_and_promises_nothing(
    world, tmp_path, dry_run
) -> None:
    files = _operator_files(tmp_path, world)
    snapshot = _snapshot(tmp_path)
    for backup in ("cut", "no_newline", "config"):
        process = run_manage(
            COMMAND,
            "--backup",
            str(files[backup]),
            "--metrics-textfile",
            str(files["textfile"]),
            *dry_run,
            DATABASE_URL="postgres://postgres@127.0.0.1:1/nowhere",
        )
        assert process.returncode == 1, process.stderr
        assert "CommandError: database error:" in process.stderr
        # No batch ran, so none "stays done".
        assert "finished batches" not in process.stderr
        assert "Traceback" not in process.stderr
        assert _snapshot(tmp_path) == snapshot
    _probed("runs that cannot connect, with operator files", 3)


# The end of a backup, judged by parsing it.


def test_a_complete_last_row_without_its_newline_is_kept(world, run_cli, tmp_path, caplog) -> None:
    """That row was deleted and committed, and its only copy was truncated."""
    initial = regression_rows()
    backup = tmp_path / "backup.jsonl"
    kept = world.eligible[:2]
    code, _out, err = run_cli("--backup", str(backup), "--max-rows", "2")
    assert code == 0, err
    assert backup_ids(backup) == set(kept)
    backup.write_bytes(backup.read_bytes()[:-1])

    code, _out, err = run_cli("--backup", str(backup))
    assert code == 0, err
    assert [r.getMessage() for r in caplog.records if r.name.endswith("backup.writer")] == [
        "regression_tracking.backup.newline_added"
    ]
    with backup.open(encoding="utf-8") as lines:
        saved = read_backup(lines)
    assert {row.id for row in saved} == set(world.eligible)
    assert len(backup.read_text().splitlines()) == len(world.eligible)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.jsonl"]
    assert remaining_ids() == set(world.linked) | set(world.recent)
    RegressionGroup.objects.bulk_create(saved)
    assert regression_rows() == initial
    _probed("complete last row without newline kept")


def test_a_cut_last_line_is_moved_aside_never_discarded(world, run_cli, tmp_path, caplog) -> None:
    backup = tmp_path / "backup.jsonl"
    code, _out, err = run_cli("--backup", str(backup), "--max-rows", "2")
    assert code == 0, err
    cut = b'{"id": 999999, "date_added": "2026-'
    backup.write_bytes(backup.read_bytes() + cut)

    code, _out, err = run_cli("--backup", str(backup))
    assert code == 0, err
    sides = [p for p in tmp_path.iterdir() if p.name.startswith("backup.jsonl.cut-")]
    assert len(sides) == 1
    (record,) = [r for r in caplog.records if r.name.endswith("backup.writer")]
    assert record.getMessage() == "regression_tracking.backup.cut_line_moved"
    assert (record.line_number, record.moved_bytes) == (3, len(cut))
    assert record.moved_to == str(sides[0])
    assert sides[0].read_bytes() == cut
    assert backup_ids(backup) == set(world.eligible)
    assert backup.read_bytes().endswith(b"}\n")
    _probed("cut last line moved aside")


@pytest.mark.parametrize(
    "content",
    [
        b'{"retention": "30d", "enabled": true}',
        b'{"retention": "30d", "enabled": true}\n',
        b"my notes\nno newline at the end",
        b"my notes\n",
        b"# a shell script\necho hello\n",
    ],
)
def test_a_file_that_is_not_a_backup_is_refused_and_left_as_it_is(
    world, run_cli, tmp_path, content
) -> None:
    path = tmp_path / "given.txt"
    path.write_bytes(content)
    before = database_checksum()
    code, out, err = run_cli("--backup", str(path))
    assert (code, out) == (1, ""), err
    assert f"CommandError: --backup: {path}: line " in err
    assert "not a backup file?; nothing was changed\n" in err
    assert "finished batches" not in err
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["given.txt"]
    assert database_checksum() == before
    _probed("files that are not backups refused")


def test_constructing_a_writer_only_looks_at_the_path(tmp_path) -> None:
    path = tmp_path / "backup.jsonl"
    path.write_bytes(b"not a backup, no newline")
    with BackupWriter(path):
        pass
    with BackupWriter(tmp_path / "new.jsonl"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.jsonl"]
    assert path.read_bytes() == b"not a backup, no newline"


def test_a_full_disk_while_moving_a_cut_line_aside_leaves_no_side_file(
    world, tmp_path, monkeypatch
) -> None:
    backup = tmp_path / "backup.jsonl"
    content = _row_lines(sorted(world.eligible)[:1]) + b'{"id": 999999, "date_added": "2026-'
    backup.write_bytes(content)
    real_write = os.write

    def write_to_a_full_disk(fd: int, data: bytes) -> int:
        # Only the side file's writes fail, as on a disk with room for nothing more.
        if ".cut-" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write_to_a_full_disk)
    for _attempt in range(3):
        with (
            pytest.raises(BackupWriteError, match="No space left on device"),
            BackupWriter(str(backup)) as writer,
        ):
            writer.write([])
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.jsonl"]
    assert backup.read_bytes() == content
