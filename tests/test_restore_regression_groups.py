from __future__ import annotations

import json
import os
import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from regression_tracking.cleanup.backup import row_to_dict
from regression_tracking.models import RegressionGroup
from regression_tracking.services import BackupFormatError, BackupWriter, read_backup
from tests.factories import RegressionGroupFactory

pytestmark = pytest.mark.django_db


def restore(path) -> str:
    out = StringIO()
    call_command("restore_regression_groups", str(path), stdout=out)
    return out.getvalue()


@pytest.fixture
def backup_file(tmp_path):
    regressions = RegressionGroupFactory.create_batch(3)
    path = tmp_path / "backup.jsonl"
    with BackupWriter(path) as writer:
        writer.write(regressions)
    return path, [row_to_dict(r) for r in regressions]


def rows_now() -> list[dict[str, object]]:
    return [row_to_dict(r) for r in RegressionGroup.objects.order_by("id")]


def test_restores_deleted_rows_with_their_ids_and_columns(backup_file) -> None:
    path, saved = backup_file
    RegressionGroup.objects.filter(id__in=[saved[0]["id"], saved[2]["id"]]).delete()
    assert restore(path) == "restored: 2\nskipped (already present): 1\n"
    assert rows_now() == saved


def test_the_last_line_of_an_id_wins(backup_file, tmp_path) -> None:
    path, saved = backup_file
    changed = {**saved[1], "active": False, "version": 7}
    path.write_text(path.read_text() + json.dumps(changed) + "\n")
    RegressionGroup.objects.all().delete()
    assert restore(path) == "restored: 3\nskipped (already present): 0\n"
    assert RegressionGroup.objects.get(id=saved[1]["id"]).version == 7


def test_blank_lines_are_ignored(backup_file) -> None:
    path, _saved = backup_file
    path.write_text("\n" + path.read_text() + "\n\n")
    RegressionGroup.objects.all().delete()
    assert restore(path).startswith("restored: 3\n")


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda line: "{not json\n", "line 2: not valid JSON"),
        (lambda line: "[1, 2]\n", "line 2: not a JSON object"),
        (lambda line: line.replace('"baseline"', '"base"'), "line 2: missing columns: baseline"),
        (
            lambda line: line[:-2] + ', "extra": 1}\n',
            "line 2: unknown columns: extra",
        ),
        (
            lambda line: line.replace('"version": 1', '"version": "one"'),
            "line 2: version: 'one' is not a valid value",
        ),
        (
            lambda line: line.replace('"version": 1', '"version": true'),
            "line 2: version: True is not a valid value",
        ),
        (
            lambda line: line.replace('"version": 1', '"version": null'),
            "line 2: version must not be null",
        ),
        (
            lambda line: json.dumps({**json.loads(line), "date_added": "yesterday"}) + "\n",
            "line 2: date_added: 'yesterday' is not a valid value",
        ),
        (
            lambda line: (
                json.dumps({**json.loads(line), "date_added": "2026-01-01T00:00:00"}) + "\n"
            ),
            "line 2: date_added: '2026-01-01T00:00:00' is not an ISO-8601 time with a zone",
        ),
        (lambda line: line[: len(line) // 2], "line 2: truncated line"),
    ],
)
def test_malformed_line_names_its_number_and_writes_nothing(backup_file, mutate, problem) -> None:
    path, _saved = backup_file
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = mutate(lines[1])
    if problem.endswith("truncated line"):
        lines = lines[:2]
    path.write_text("".join(lines))
    RegressionGroup.objects.all().delete()
    with pytest.raises(CommandError, match=f"{path}: {problem}.*nothing was restored"):
        restore(path)
    assert RegressionGroup.objects.count() == 0


def test_rows_of_a_missing_project_restore_nothing(backup_file) -> None:
    path, _saved = backup_file
    RegressionGroup.objects.all().delete()
    lines = path.read_text().splitlines()
    lines[2] = json.dumps({**json.loads(lines[2]), "project_id": 999999})
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CommandError, match="projects that do not exist: 999999"):
        restore(path)
    assert RegressionGroup.objects.count() == 0


def test_missing_file(tmp_path) -> None:
    with pytest.raises(CommandError, match=r"cannot read .*No such file"):
        restore(tmp_path / "nope.jsonl")


def test_read_backup_reports_the_line_number() -> None:
    with pytest.raises(BackupFormatError) as error:
        read_backup(["\n", "{}\n"])
    assert error.value.line_number == 2


def test_skip_missing_projects_leaves_those_rows_out(backup_file) -> None:
    path, saved = backup_file
    RegressionGroup.objects.all().delete()
    lines = path.read_text().splitlines()
    lines[2] = json.dumps({**json.loads(lines[2]), "project_id": 999999})
    path.write_text("\n".join(lines) + "\n")
    out = StringIO()
    call_command("restore_regression_groups", str(path), "--skip-missing-projects", stdout=out)
    assert out.getvalue() == (
        "restored: 2\nskipped (already present): 0\nskipped (project missing): 1\n"
    )
    assert rows_now() == saved[:2]


def test_abbreviated_options_are_refused(backup_file) -> None:
    path, _saved = backup_file
    with pytest.raises(CommandError, match="unrecognized arguments: --skip"):
        call_command("restore_regression_groups", str(path), "--skip")


# Every column as the model and Sentry's bounded fields take it, naming the line.


def _with(line: str, **changes: object) -> str:
    return json.dumps({**json.loads(line), **changes}) + "\n"


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda line: _with(line, type=7), "type: 7 is not a valid value (not a regression type"),
        (lambda line: _with(line, type=-1), "type: -1 is not a valid value"),
        (lambda line: _with(line, type=True), "type: True is not a valid value"),
        (lambda line: _with(line, id=0), "id: 0 is not a valid value (must be at least 1)"),
        (lambda line: _with(line, id=-5), "id: -5 is not a valid value (must be at least 1)"),
        (lambda line: _with(line, id=3.9), "id: 3.9 is not a valid value (not an integer)"),
        (lambda line: _with(line, id="3"), "id: '3' is not a valid value (not an integer)"),
        (lambda line: _with(line, id=True), "id: True is not a valid value"),
        (lambda line: _with(line, project_id=3.9), "project_id: 3.9 is not a valid value"),
        (lambda line: _with(line, project_id=0), "project_id: 0 is not a valid value"),
        (lambda line: _with(line, version=0), "version: 0 is not a valid value"),
        (lambda line: _with(line, version=1.0), "version: 1.0 is not a valid value"),
        (lambda line: _with(line, baseline="1"), "baseline: '1' is not a valid value"),
        (lambda line: _with(line, baseline=True), "baseline: True is not a valid value"),
        (
            lambda line: _with(line, baseline=float("nan")),
            "baseline: nan is not a valid value (not a finite number)",
        ),
        (
            lambda line: _with(line, regressed=float("-inf")),
            "regressed: -inf is not a valid value (not a finite number)",
        ),
        (
            lambda line: re.sub(r'"regressed": [^,}]+', '"regressed": 1e400', line),
            "regressed: inf is not a valid value (not a finite number)",
        ),
        (
            lambda line: line.replace('"fingerprint": "', '"fingerprint": "\\ud800', 1),
            "fingerprint: '\\ud800",
        ),
        (
            lambda line: line.replace('"fingerprint": "', '"fingerprint": "\\u0000', 1),
            "fingerprint: '\\x00",
        ),
        (lambda line: _with(line, fingerprint=7), "fingerprint: 7 is not a valid value"),
        (lambda line: _with(line, fingerprint="f" * 65), "longer than 64 characters"),
        (lambda line: _with(line, active=1), "active: 1 is not a valid value (not true or false)"),
        (lambda line: _with(line, date_resolved=5), "date_resolved: 5 is not a valid value"),
        (
            lambda line: _with(line, date_regressed="2026-13-01T00:00:00+00:00"),
            "date_regressed: '2026-13-01T00:00:00+00:00' is not a valid value",
        ),
        (lambda line: '{"id": ' * 5_000 + "\n", "not valid JSON"),
    ],
)
def test_every_column_is_checked_and_the_line_named(backup_file, mutate, problem) -> None:
    path, _saved = backup_file
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = mutate(lines[1])
    path.write_text("".join(lines))
    RegressionGroup.objects.all().delete()
    with pytest.raises(CommandError) as error:
        restore(path)
    message = str(error.value)
    assert message.startswith(f"{path}: line 2: ")
    assert problem in message
    assert message.endswith("; nothing was restored")
    assert RegressionGroup.objects.count() == 0


def test_a_complete_last_row_without_its_newline_is_restored(backup_file) -> None:
    path, saved = backup_file
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    RegressionGroup.objects.all().delete()
    assert restore(path) == "restored: 3\nskipped (already present): 0\n"
    assert rows_now() == saved


def test_a_line_longer_than_any_row_is_refused_without_reading_it_whole(backup_file) -> None:
    path, _saved = backup_file
    path.write_text(path.read_text() + "x" * 200_000 + "\n")
    RegressionGroup.objects.all().delete()
    with pytest.raises(CommandError, match=r"line 4: longer than 65536 bytes"):
        restore(path)
    assert RegressionGroup.objects.count() == 0


# The cleanup's own aftermath.


def _recreate_unique_key(saved: dict[str, object]) -> RegressionGroup:
    """What the detector does after the cleanup: a new row with the deleted row's unique key."""
    return RegressionGroupFactory.create(
        project_id=saved["project_id"],
        type=saved["type"],
        fingerprint=saved["fingerprint"],
        version=saved["version"],
    )


def test_a_unique_key_created_again_refuses_the_file_with_a_clear_message(backup_file) -> None:
    path, saved = backup_file
    RegressionGroup.objects.all().delete()
    again = _recreate_unique_key(saved[1])
    with pytest.raises(CommandError) as error:
        restore(path)
    assert str(error.value) == (
        f"{path}: 1 row conflicts with rows in the database; first: line 2: id {saved[1]['id']}:"
        f" regression group {again.id} has the same type, project, fingerprint and version "
        f"{saved[1]['version']} (created again since the backup); nothing was restored "
        "(--skip-conflicts leaves them out)"
    )
    assert list(RegressionGroup.objects.values_list("id", flat=True)) == [again.id]


def test_skip_conflicts_leaves_them_out_and_counts_them(backup_file) -> None:
    path, saved = backup_file
    RegressionGroup.objects.all().delete()
    again = _recreate_unique_key(saved[1])
    out = StringIO()
    call_command("restore_regression_groups", str(path), "--skip-conflicts", stdout=out)
    assert out.getvalue() == ("restored: 2\nskipped (already present): 0\nskipped (conflicts): 1\n")
    assert set(RegressionGroup.objects.values_list("id", flat=True)) == {
        saved[0]["id"],
        saved[2]["id"],
        again.id,
    }


def test_an_id_held_by_a_different_row_is_a_conflict_not_already_present(backup_file) -> None:
    path, saved = backup_file
    RegressionGroup.objects.filter(id=saved[0]["id"]).update(fingerprint="something-else")
    RegressionGroup.objects.filter(id__in=[saved[1]["id"], saved[2]["id"]]).delete()
    with pytest.raises(
        CommandError,
        match=rf"line 1: id {saved[0]['id']} is held by a different regression group .*"
        "fingerprint something-else",
    ):
        restore(path)
    assert RegressionGroup.objects.count() == 1
    out = StringIO()
    call_command("restore_regression_groups", str(path), "--skip-conflicts", stdout=out)
    assert out.getvalue() == "restored: 2\nskipped (already present): 0\nskipped (conflicts): 1\n"


def test_restore_reads_the_file_in_bounded_lines_not_all_rows(backup_file, tmp_path) -> None:
    """Many lines, one id repeated: the last wins, as before, with no row list held."""
    path, saved = backup_file
    changed = {**saved[1], "version": 9}
    path.write_text(path.read_text() + json.dumps(changed) + "\n" + json.dumps(saved[0]) + "\n")
    RegressionGroup.objects.all().delete()
    assert restore(path) == "restored: 3\nskipped (already present): 0\n"
    assert RegressionGroup.objects.get(id=saved[1]["id"]).version == 9


def test_a_fifo_is_refused_not_waited_on(tmp_path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(
        CommandError, match=r"cannot read .*fifo: a FIFO \(named pipe\), not a backup"
    ):
        restore(fifo)
