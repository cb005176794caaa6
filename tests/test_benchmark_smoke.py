"""Smoke tests of the benchmark (``python -m benchmarks.run``): a small run, so its code cannot rot.

It fills the test database itself (TRUNCATE, bulk INSERTs with the foreign-key triggers off, so
the role must be a superuser, as the suite's is) and runs the commands in subprocesses against it.
Timings are not asserted, so these tests cannot fail on a slowdown: at this size they say
nothing. The figures come from the benchmark itself, on its own data (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import math

import pytest

from benchmarks.page import command_line, write_section
from benchmarks.run import format_table, parse_args, run_benchmark
from benchmarks.shapes import measure_shape, page_section, summarize
from tests.utils import database_url

ROWS = 20_000


def assert_seconds(value: object) -> None:
    assert isinstance(value, float), value
    assert math.isfinite(value), value
    assert value >= 0, value


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_smoke_small_run_produces_every_figure() -> None:
    report = run_benchmark(
        database_url=database_url(), rows=ROWS, repeat=1, lookup_pairs=1_000, explain=True
    )

    dataset = report["dataset"]
    assert (dataset["rows"], dataset["grouphashes"]) == (ROWS, 38_000)
    assert dataset["orphans"] == dataset["missing_grouphash"] + dataset["grouphash_without_group"]
    assert_seconds(report["startup_seconds"])
    for label in ("A", "B", "C"):
        for name in ("floor_seconds", "command_seconds", "service_seconds", "ratio"):
            # The command minus its start-up can dip below zero on a busy machine: only finite.
            assert math.isfinite(report[label][name]), (label, name)
        assert isinstance(report[label]["pass"], bool)
    lookup = report["D"]
    assert (lookup["pairs"], lookup["projects"]) == (1_000, 1_000)
    assert lookup["bulk"]["statements"] == 1
    assert lookup["upstream_union"]["statements"] == 1
    assert lookup["per_pair_loop"]["statements"] == 1_000
    for shape in ("bulk", "per_pair_loop", "upstream_union"):
        assert_seconds(lookup[shape]["seconds"])
    memory = report["E"]
    assert memory["rows_at_tenth"] == ROWS // 10
    assert 10 < memory["max_rss_mb_at_tenth"] <= memory["max_rss_mb"] * 2
    assert math.isfinite(report["shards"]["two_shards_parallel_seconds"])
    for step in ("detect_orphans", "python", "total"):
        assert step in report["profile"]["dry_run"]
    assert report["profile"]["delete"]["batches"]["statements"] >= 1
    alternatives = report["alternatives"]
    assert_seconds(alternatives["delete_batches_id_array"])
    assert_seconds(alternatives["with_live_key_index"]["floor_count"])
    assert any(name.startswith("command: SELECT") for name in report["explain"])

    table = format_table(report)
    assert table.startswith(f"N = {ROWS:,} RegressionGroups")
    for label in ("A detection", "B delete", "C deactivate", "D lookup", "E peak RSS", "2 shards"):
        assert label in table
    json.dumps(report)


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_smoke_small_run_of_a_shape_with_its_peers(tmp_path) -> None:
    figures = measure_shape(
        "discarded", rows=400, projects=10, database_url=database_url(), repeat=1
    )
    assert (figures["rows"], figures["orphans"]) == (400, 40)
    for step in ("detect", "delete", "deactivate"):
        assert math.isfinite(figures[step]["command"]), step
        assert_seconds(figures[step]["floor"])
    assert_seconds(figures["detect"]["count_floor"])
    for step in ("detect", "delete", "deactivate"):
        # Buffers come from the server's statistics: every step touches some.
        assert figures[step]["floor_blocks"] > 0, step
        assert figures[step]["command_blocks"] > 0, step
    assert figures["delete"]["batch_sizes"]["min"] == 1000
    profile = figures["delete_profile"]
    assert profile["detect_orphans"]["statements"] == 1
    # No backup: the batch's DELETE locks its rows itself, and the check decides after it.
    assert "lock_rows" not in profile
    assert profile["batches"]["statements"] == profile["issue_check"]["statements"] == 1
    assert_seconds(figures["bulk_delete_query"])
    assert_seconds(figures["per_row_extrapolated"])
    assert summarize(figures).startswith("discarded")
    json.dumps(figures)
    page = tmp_path / "benchmarks.md"
    page.write_text("# Figures\n\nProse the benchmark leaves alone.\n")
    for _run in range(2):
        write_section(page, "shapes", page_section([figures], "python -m benchmarks.shapes"))
    text = page.read_text()
    assert text.startswith("# Figures\n\nProse the benchmark leaves alone.\n\n<!-- figures:shapes")
    assert text.count("<!-- figures:shapes -->") == 1
    (machine,) = [line for line in text.splitlines() if line.startswith("Measured ")]
    assert "PostgreSQL" in machine
    assert machine.endswith("`python -m benchmarks.shapes`.")
    assert "| discarded, 400 | " in text
    assert "(buffers " in text
    assert "Where the delete's time goes" in text
    assert "Not met" in text or "Every target met" in text


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_smoke_a_scaling_run_measures_the_command_without_the_peers() -> None:
    figures = measure_shape(
        "default", rows=400, projects=10, database_url=database_url(), repeat=1, peers=False
    )
    assert figures["startup_seconds"] > 0
    assert math.isfinite(figures["rss_above_baseline_bytes_per_orphan"])
    assert "bulk_delete_query" not in figures
    assert "BulkDeleteQuery" not in summarize(figures)


def test_the_figures_page_never_shows_a_password() -> None:
    command = command_line(
        "python -m benchmarks.shapes", ["--database-url", "postgres://u:s3cr%40t@h/db"]
    )
    assert command == "python -m benchmarks.shapes --database-url postgres://u:***@h/db"


def test_refuses_a_database_that_is_not_its_own() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--database-url", "postgres://postgres@127.0.0.1:5432/production"])
