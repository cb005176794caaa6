from __future__ import annotations

import json
import re
import signal
import subprocess
from datetime import datetime, timedelta
from io import StringIO

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, models
from django.utils import timezone

from regression_tracking.cleanup.backup import row_to_dict
from regression_tracking.cleanup.locking import CLEANUP_LOCK_CLASS
from regression_tracking.cleanup.projects import unknown_project_ids
from regression_tracking.management.commands.cleanup_orphaned_regressions import (
    Command as CleanupCommand,
)
from regression_tracking.models import RegressionGroup, RegressionType
from tests.factories import (
    ProjectFactory,
    RegressionGroupFactory,
    create_grouphash_without_group,
    create_linked_regression,
)
from tests.utils import ROOT, manage_command, manage_env, run_manage
from tests.utils import run_cleanup as run

pytestmark = pytest.mark.django_db

COMMAND = "cleanup_orphaned_regressions"


def days_ago(days: float) -> datetime:
    return timezone.now() - timedelta(days=days)


class FakeTime:
    """The command's clock and pause: time moves only when the run pauses."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def clock(self) -> float:
        return self.now

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time(monkeypatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(CleanupCommand, "clock", staticmethod(fake.clock))
    monkeypatch.setattr(CleanupCommand, "pause", staticmethod(fake.pause))
    return fake


@pytest.fixture
def world() -> dict[str, RegressionGroup]:
    project = ProjectFactory.create()
    linked = create_linked_regression(project=project, date_added=days_ago(9))
    old_active = RegressionGroupFactory.create(project=project, date_added=days_ago(2))
    old_inactive = RegressionGroupFactory.create(
        project=project, date_added=days_ago(2), active=False
    )
    discarded = RegressionGroupFactory.create(
        project=project, date_added=days_ago(2), type=RegressionType.FUNCTION, fingerprint="ff"
    )
    create_grouphash_without_group(discarded)
    recent = RegressionGroupFactory.create(project=project, date_added=days_ago(0.01))
    return {
        "linked": linked,
        "old_active": old_active,
        "old_inactive": old_inactive,
        "discarded": discarded,
        "recent": recent,
    }


def snapshot() -> list[dict[str, object]]:
    return [row_to_dict(r) for r in RegressionGroup.objects.order_by("id")]


def remaining() -> set[int]:
    return set(RegressionGroup.objects.values_list("id", flat=True))


class TestOutput:
    def test_text_summary(self, world) -> None:
        assert run() == (
            "scanned: 5\n"
            "orphaned: 4 (missing_grouphash 3, grouphash_without_group 1)\n"
            "too recent: 1 (younger than 24h)\n"
            "eligible: 3\n"
            "deleted: 3\n"
            "batches: 1\n"
            "batch sizes: 1000 to 1000, last 1000 (adapted to --batch-time 0.5s)\n"
            f"last id: {world['discarded'].id}\n"
            "stop reason: done\n"
            "elapsed: <s>\n"
        )

    def test_dry_run_summary_and_nothing_changed(self, world) -> None:
        before = snapshot()
        assert run("--dry-run", "--action", "deactivate", "--min-age", "7d") == (
            "scanned: 5\n"
            "orphaned: 4 (missing_grouphash 3, grouphash_without_group 1)\n"
            "too recent: 4 (younger than 7d)\n"
            "eligible: 0\n"
            "would be deactivated: 0 (dry run: nothing was changed)\n"
            "batches: 0\n"
            "last id: -\n"
            "stop reason: done\n"
            "elapsed: <s>\n"
        )
        assert snapshot() == before

    def test_batch_lines_at_verbosity_2_and_row_lines_at_3(self, world) -> None:
        ids = [world[k].id for k in ("old_active", "old_inactive", "discarded")]
        assert run("--batch-size", "2", "-v", "3").splitlines()[:5] == [
            f"batch 1: ids {ids[0]}..{ids[1]} (2 candidates), 2 deleted",
            f"  deleted regression group {ids[0]}",
            f"  deleted regression group {ids[1]}",
            f"batch 2: ids {ids[2]}..{ids[2]} (1 candidates), 1 deleted",
            f"  deleted regression group {ids[2]}",
        ]

    def test_dry_run_batch_lines_say_would(self, world) -> None:
        first = world["old_active"].id
        assert run("--dry-run", "--batch-size", "1", "-v", "2").splitlines()[0] == (
            f"batch 1: ids {first}..{first} (1 candidates), 1 would be deleted"
        )

    def test_verbosity_0_prints_nothing(self, world) -> None:
        assert run("-v", "0") == ""
        assert remaining() == {world["linked"].id, world["recent"].id}

    def test_json(self, world) -> None:
        data = json.loads(run("--format", "json", "--action", "deactivate", "-v", "0"))
        data.pop("elapsed_seconds")
        assert data == {
            "dry_run": False,
            "action": "deactivate",
            "scanned": 5,
            "orphaned": 4,
            "by_reason": {"missing_grouphash": 3, "grouphash_without_group": 1},
            "too_recent": 1,
            "eligible": 2,
            "acted": 2,
            "would_act": 0,
            "skipped": 0,
            "changed_meanwhile": 0,
            "not_reached": 0,
            "batches": 1,
            "batch_sizes": {"min": 1000, "max": 1000, "last": 1000},
            "last_id": world["discarded"].id,
            "standbys": None,
            "replication_lag_waits": 0,
            "replication_lag_wait_seconds": 0.0,
            "stop_reason": "done",
        }


class TestOptions:
    def test_deactivate_leaves_inactive_orphans_alone(self, world) -> None:
        run("--action", "deactivate")
        active = dict(RegressionGroup.objects.values_list("id", "active"))
        assert active == {
            world["linked"].id: True,
            world["old_active"].id: False,
            world["old_inactive"].id: False,
            world["discarded"].id: False,
            world["recent"].id: True,
        }
        assert RegressionGroup.objects.get(id=world["old_inactive"].id).date_resolved is None

    @pytest.mark.parametrize(
        ("min_age", "acted"), [("0", 4), ("90s", 4), ("90m", 3), ("12h", 3), ("3d", 0)]
    )
    def test_min_age(self, world, min_age, acted) -> None:
        assert f"deleted: {acted}\n" in run("--min-age", min_age)

    def test_project_repeatable(self, world) -> None:
        other = RegressionGroupFactory.create(date_added=days_ago(3))
        third = RegressionGroupFactory.create(date_added=days_ago(3))
        output = run("--project", str(other.project_id), "--project", str(third.project_id))
        assert "scanned: 2\n" in output
        assert "deleted: 2\n" in output
        assert world["old_active"].id in remaining()

    def test_type(self, world) -> None:
        assert "deleted: 1\n" in run("--type", "function")
        assert remaining() == {
            world[k].id for k in ("linked", "old_active", "old_inactive", "recent")
        }

    def test_max_rows_then_start_after_id(self, world) -> None:
        output = run("--max-rows", "2", "--batch-size", "1")
        assert "stop reason: max_rows\n" in output
        last_id = re.search(r"last id: (\d+)", output)
        assert last_id
        assert "deleted: 1\n" in run("--start-after-id", last_id[1])
        assert remaining() == {world["linked"].id, world["recent"].id}

    def test_max_runtime(self, world, fake_time) -> None:
        output = run("--max-runtime", "1s", "--sleep", "1.5", "--batch-size", "1")
        assert "batches: 1\n" in output
        assert "stop reason: max_runtime\n" in output
        # The pause after the first batch is cut at the deadline, and nothing runs after it.
        assert sum(fake_time.pauses) == pytest.approx(1.0)
        assert fake_time.now == pytest.approx(1.0)

    def test_sleep(self, world, fake_time) -> None:
        output = run("--sleep", "0.3", "--batch-size", "1", "--batch-time", "0")
        assert "batches: 3\n" in output
        # 0.3 s between batches 1-2 and 2-3, none after the last.
        assert sum(fake_time.pauses) == pytest.approx(0.6)
        assert fake_time.now == pytest.approx(0.6)

    def test_backup_then_restore_gives_back_identical_rows(self, world, tmp_path) -> None:
        before = snapshot()
        backup = tmp_path / "deleted.jsonl"
        run("--backup", str(backup))
        assert len(backup.read_text().splitlines()) == 3
        out = StringIO()
        call_command("restore_regression_groups", str(backup), stdout=out)
        assert out.getvalue() == "restored: 3\nskipped (already present): 0\n"
        assert snapshot() == before

    def test_dry_run_does_not_create_the_backup(self, world, tmp_path) -> None:
        run("--dry-run", "--backup", str(tmp_path / "b.jsonl"))
        assert not (tmp_path / "b.jsonl").exists()

    def test_database_option(self, world) -> None:
        assert "deleted: 3\n" in run("--database", "default")

    def test_help_explains_every_option(self) -> None:
        parser = CleanupCommand().create_parser("manage.py", COMMAND)
        text = " ".join(parser.format_help().split())
        for option in (
            "--dry-run",
            "--action {delete,deactivate}",
            "--min-age DURATION",
            "--project ID",
            "--type {endpoint,function}",
            "--batch-size N",
            "--batch-time SECONDS",
            "--max-rows N",
            "--max-runtime DURATION",
            "--sleep SECONDS",
            "--start-after-id ID",
            "--backup PATH",
            "--format {text,json}",
            "--database DATABASE",
            "-v {0,1,2,3}",
        ):
            assert option in text
        assert "Grace period" in text
        assert "Default: 24h" in text


class TestBadInput:
    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--batch-size", "0"], "argument --batch-size: must be between 1 and 10000, got 0"),
            (["--batch-size", "-5"], "argument --batch-size: must be between 1 and 10000, got -5"),
            (["--batch-size", "ten"], "argument --batch-size: invalid integer 'ten'"),
            (["--batch-size", "10001"], "argument --batch-size: must be between 1 and 10000"),
            (["--max-rows", "0"], "argument --max-rows: must be at least 1"),
            (["--max-rows", "9" * 30], "argument --max-rows: '9999"),
            (["--min-age", "5"], "argument --min-age: invalid duration '5'"),
            (["--min-age=-1h"], "argument --min-age: invalid duration '-1h'"),
            (["--min-age", "-1d"], "argument --min-age: invalid duration '-1d'"),
            (["--max-runtime", "-5m"], "argument --max-runtime: invalid duration '-5m'"),
            (["--min-age", "1w"], "argument --min-age: invalid duration '1w'"),
            (["--min-age", "99999999999d"], "argument --min-age: duration '99999999999d' is too"),
            (["--max-runtime", "0"], "argument --max-runtime: must be positive"),
            (["--sleep", "-1"], "argument --sleep: must not be negative, got -1.0"),
            (["--sleep", "3601"], "argument --sleep: must be at most 3600 seconds"),
            (["--sleep", "nan"], "argument --sleep: invalid number 'nan'"),
            (["--batch-time", "-1"], "argument --batch-time: must be between 0 and 60 seconds"),
            (["--batch-time", "61"], "argument --batch-time: must be between 0 and 60 seconds"),
            (["--batch-time", "fast"], "argument --batch-time: invalid number 'fast'"),
            (["--min-age", "\u0667d"], "argument --min-age: invalid duration"),
            (["--batch-size", "\u0661\u0660"], "argument --batch-size: invalid integer"),
            (["--start-after-id", "-1"], "argument --start-after-id: must be at least 0"),
            (["--project", "1; DROP TABLE x"], "argument --project: invalid integer"),
            (["--project", "0"], "argument --project: must be at least 1"),
            (
                ["--project", "424242"],
                "--project: no project and no regression groups with id 424242",
            ),
            (["--action", "purge"], "argument --action: invalid choice: 'purge'"),
            (["--type", "span"], "argument --type: invalid choice: 'span'"),
            (["--format", "xml"], "argument --format: invalid choice: 'xml'"),
            (["--database", "nope"], "--database: unknown database alias 'nope'"),
        ],
    )
    def test_names_the_option_and_changes_nothing(self, world, args, message) -> None:
        before = snapshot()
        with pytest.raises(CommandError) as error:
            run(*args)
        assert message in str(error.value)
        assert snapshot() == before

    def test_backup_that_is_a_directory(self, world, tmp_path) -> None:
        before = snapshot()
        with pytest.raises(CommandError, match=f"--backup: {tmp_path} is a directory"):
            run("--backup", str(tmp_path))
        assert snapshot() == before

    def test_backup_in_a_missing_folder(self, world, tmp_path) -> None:
        path = tmp_path / "missing" / "b.jsonl"
        with pytest.raises(CommandError, match=r"--backup: cannot write to .*No such file"):
            run("--backup", str(path))
        with pytest.raises(CommandError, match="--backup: cannot write to"):
            run("--backup", str(path), "--dry-run")
        assert len(snapshot()) == 5


def _hold_cleanup_lock() -> psycopg.Connection[tuple[object, ...]]:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    other = psycopg.connect(**params, autocommit=True)
    other.execute("SELECT pg_advisory_lock(%s, 0)", [CLEANUP_LOCK_CLASS])
    return other


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
class TestProcess:
    """Real subprocesses, for exit codes, signals and the lock."""

    def test_exit_0_on_success(self, world) -> None:
        process = run_manage(COMMAND, "--format", "json")
        assert process.returncode == 0, process.stderr
        assert json.loads(process.stdout)["acted"] == 3

    def test_exit_0_when_a_cap_is_reached(self, world) -> None:
        process = run_manage(COMMAND, "--max-rows", "1")
        assert process.returncode == 0
        assert "stop reason: max_rows" in process.stdout

    def test_exit_1_on_a_bad_value(self, world) -> None:
        process = run_manage(COMMAND, "--project", "424242")
        assert process.returncode == 1
        assert (
            "CommandError: --project: no project and no regression groups with id 424242"
            in process.stderr
        )
        assert len(snapshot()) == 5

    def test_exit_1_on_a_database_error(self, world) -> None:
        process = run_manage(COMMAND, DATABASE_URL="postgres://postgres@127.0.0.1:1/nowhere")
        assert process.returncode == 1
        assert "CommandError: database error:" in process.stderr

    def test_exit_2_on_a_usage_error(self, world) -> None:
        process = run_manage(COMMAND, "--batch-size", "zero")
        assert process.returncode == 2
        assert "argument --batch-size: invalid integer 'zero'" in process.stderr
        assert len(snapshot()) == 5

    def test_exit_3_while_another_run_holds_the_lock(self, world) -> None:
        before = snapshot()
        with _hold_cleanup_lock():
            process = run_manage(COMMAND)
        assert process.returncode == 3
        assert "another cleanup_orphaned_regressions run is in progress" in process.stderr
        assert "nothing was changed" in process.stderr
        assert snapshot() == before

    @pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
    def test_signal_finishes_the_batch_and_prints_the_summary(self, signum) -> None:
        project = ProjectFactory.create()
        RegressionGroup.objects.bulk_create(
            RegressionGroupFactory.build(project=project, date_added=days_ago(2)) for _ in range(20)
        )
        process = subprocess.Popen(
            manage_command(COMMAND, "--batch-size", "1", "--sleep", "0.2", "-v", "2"),
            env=manage_env(),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        first_line = process.stdout.readline()
        assert first_line.startswith("batch 1:")
        process.send_signal(signum)
        rest, errors = process.communicate(timeout=30)
        assert process.returncode == 0, errors
        assert "stop reason: interrupted" in rest
        acted = int(re.search(r"deleted: (\d+)", rest)[1])
        assert 1 <= acted < 20
        assert RegressionGroup.objects.count() == 20 - acted


class TestShardsMetricsAndProgress:
    def test_shards_split_the_projects_without_overlap(self) -> None:
        regressions = [RegressionGroupFactory.create(date_added=days_ago(2)) for _ in range(6)]
        deleted: set[int] = set()
        for index in range(3):
            before = remaining()
            output = run("--shard", f"{index}/3")
            gone = before - remaining()
            assert {r.project_id % 3 for r in regressions if r.id in gone} <= {index}
            assert f"deleted: {len(gone)}\n" in output
            assert not deleted & gone
            deleted |= gone
        assert deleted == {r.id for r in regressions}

    @pytest.mark.parametrize("value", ["3/3", "1", "a/b", "0/0", "0/2000", "-1/2"])
    def test_bad_shard(self, value) -> None:
        with pytest.raises(CommandError, match=r"argument --shard: (invalid shard|must be k/n)"):
            run(f"--shard={value}")

    def test_metrics_textfile(self, world, tmp_path) -> None:
        path = tmp_path / "cleanup.prom"
        run("--metrics-textfile", str(path))
        text = path.read_text()
        assert "regression_tracking_orphans_deleted_total 3.0" in text
        assert (
            'regression_tracking_orphans_detected_total{reason="grouphash_without_group"}' in text
        )

    def test_metrics_textfile_in_a_missing_folder(self, world, tmp_path) -> None:
        with pytest.raises(CommandError, match="--metrics-textfile: cannot write to"):
            run("--metrics-textfile", str(tmp_path / "no" / "x.prom"))
        assert len(snapshot()) == 5

    def test_progress_bar_on_a_terminal(self, world, time_machine) -> None:
        class Terminal(StringIO):
            def isatty(self) -> bool:
                return True

        # tqdm's clock stands still: no elapsed time, no estimate, and (redrawing at most every
        # 0.1 s) only the first batch's frame and the last state, drawn when the run ends.
        time_machine.move_to(timezone.now(), tick=False)
        out, err = StringIO(), Terminal()
        call_command(COMMAND, "--batch-size", "2", stdout=out, stderr=err, no_color=True)
        assert err.getvalue() == (
            "\r 67% |" + "#" * 20 + "          | 2/3 rows, batch 1 [00:00<?]"
            "\r100% |" + "#" * 30 + "| 3/3 rows, batch 2 [00:00<?]\n"
        )

    def test_no_progress_bar_when_stderr_is_not_a_terminal(self, world) -> None:
        err = StringIO()
        call_command(COMMAND, stdout=StringIO(), stderr=err)
        assert err.getvalue() == ""


class TestExactOptions:
    def test_abbreviations_are_refused_not_guessed(self, world) -> None:
        before = snapshot()
        with pytest.raises(CommandError, match="unrecognized arguments: --force"):
            run("--force")
        with pytest.raises(CommandError, match="unrecognized arguments: --dry"):
            run("--dry")
        assert snapshot() == before

    def test_project_of_a_deleted_project_with_regression_groups_is_accepted(self, world) -> None:
        stray = RegressionGroupFactory.create(date_added=days_ago(2))
        project = stray.project
        # Upstream keeps a bare project_id: emulate a deleted project by dropping the row alone.
        with connection.constraint_checks_disabled():
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM sentry_project WHERE id = %s", [project.id])
            assert "deleted: 1\n" in run("--project", str(project.id))
        assert stray.id not in remaining()


class TestProjectSelector:
    def test_unknown_project_ids_keeps_the_order_given(self, world) -> None:
        project = ProjectFactory.create()
        assert unknown_project_ids([424242, project.id, 7777777]) == [424242, 7777777]

    def test_a_deleted_project_with_regression_groups_is_known(self, world) -> None:
        stray = RegressionGroupFactory.create(date_added=days_ago(2))
        with connection.constraint_checks_disabled():
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM sentry_project WHERE id = %s", [stray.project_id])
            assert unknown_project_ids([stray.project_id]) == []
            stray.delete()

    def test_the_options_module_queries_nothing(self) -> None:
        """The --project check was a query in management/options.py."""
        from regression_tracking.management import options

        assert not [
            name
            for name, value in vars(options).items()
            if isinstance(value, type) and issubclass(value, models.Model)
        ]
