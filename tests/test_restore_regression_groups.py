from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from regression_tracking.models import RegressionGroup
from regression_tracking.services import BackupWriter, read_backup
from regression_tracking.services.backup import BackupFormatError, row_to_dict
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
