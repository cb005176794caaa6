"""The cleanup against the floor and two peers on more than one data shape.

    .venv/bin/python -m benchmarks.shapes [--database-url URL] [--scale 100000,3000000]

Shapes (each built with ``INSERT … SELECT generate_series`` by ``benchmarks.dataset``):

- ``default``: N rows over 1,000 projects, 10% orphans (the benchmark's own data);
- ``discarded``: as many GroupHashes without a group as with one (Sentry's "delete and discard");
- ``dense``: about a third of the rows orphaned (the issue hash of every fourth linked row gone);
- ``large_projects``: 10 projects of N/10 rows each.

Per shape: the command (a subprocess, its start-up subtracted) for detection (``--dry-run``)
against the one-statement count, delete and deactivate against one ``DELETE`` or ``UPDATE … NOT
EXISTS``; Sentry's ``BulkDeleteQuery`` pattern on the orphan predicate (``DELETE … WHERE id =
ANY(ARRAY(SELECT id … LIMIT 10000))`` until no row is left); and the seed's per-row design (a
query per RegressionGroup), timed on a sample of rows and extrapolated to N.

The command's figures are its wall time minus its process baseline: the same command on an empty
scope (``--dry-run --start-after-id`` past the last id), median of 5: Python and Django start-up,
the connection, the lock and the range bounds, which the floor (one statement on an open
connection) does not pay. Peak RSS above that baseline, per eligible orphan, is the memory the
rows cost. Scaling runs (``--scale``, the default shape) measure the command against the floor
without the two peers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.page import DEFAULT_PAGE, command_line, machine_line, ratio_cell, write_section
from benchmarks.run import setup_django

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/bench"
PER_ROW_SAMPLE = 2_000
BULK_DELETE_CHUNK = 10_000


def _discard_half_the_grouphashes() -> None:
    """Shape (a): as many GroupHashes without a group as with one (the unrelated second hash of
    every issue loses its group, as a discard leaves it)."""
    from benchmarks import dataset

    dataset.execute(
        "UPDATE sentry_grouphash SET group_id = NULL, group_tombstone_id = id"
        " WHERE id > (SELECT max(id) FROM sentry_regressiongroup)"
    )
    dataset.vacuum(("sentry_grouphash",))


# Shape "dense": the issue's own GroupHash of every DENSE_MODULUS-th linked row is gone too.
DENSE_MODULUS = 4


def _drop_a_quarter_of_the_issue_hashes() -> None:
    """Shape (b): about a third of the rows orphaned. The own GroupHash of every fourth row that
    has a live issue is deleted: 10% + 90% / 4 = 32.5% orphans, mostly ``missing_grouphash``."""
    from benchmarks import dataset

    dataset.execute(
        "DELETE FROM sentry_grouphash WHERE id <= (SELECT max(id) FROM sentry_regressiongroup)"
        f" AND group_id IS NOT NULL AND id % {DENSE_MODULUS} = 1"
    )
    dataset.vacuum(("sentry_grouphash",))


def _count_by_hand() -> Any:
    """What the data holds, from the hand-written orphan predicate (not the code under test)."""
    from benchmarks import dataset
    from benchmarks.floor import ORPHAN

    [(rows, orphans, without_group, active_orphans)] = dataset.execute(
        "SELECT count(*), count(*) FILTER (WHERE orphan), count(*) FILTER (WHERE orphan AND"
        " EXISTS (SELECT 1 FROM sentry_grouphash gh WHERE gh.project_id = rg.project_id"
        " AND gh.hash = md5(rg.fingerprint))), count(*) FILTER (WHERE orphan AND active)"
        f" FROM (SELECT rg.*, {ORPHAN} AS orphan FROM sentry_regressiongroup rg) rg"
    )
    [(grouphashes,)] = dataset.execute("SELECT count(*) FROM sentry_grouphash")
    return dataset.Expected(
        rows=int(rows),
        grouphashes=int(grouphashes),
        orphans=int(orphans),
        missing_grouphash=int(orphans) - int(without_group),
        grouphash_without_group=int(without_group),
        active_orphans=int(active_orphans),
    )


def measure_shape(
    name: str, *, rows: int, projects: int, database_url: str, repeat: int, peers: bool = True
) -> dict[str, Any]:
    from django.db import connection, transaction

    from benchmarks import dataset
    from benchmarks.commands import cleanup_args, run_manage
    from benchmarks.floor import (
        FLOOR_CENSUS,
        FLOOR_COUNT,
        FLOOR_DELETE,
        FLOOR_UPDATE,
        ORPHAN,
        Statement,
        database_blocks,
        profile_cleanup,
        run_statement,
    )
    from regression_tracking.services import CleanupAction

    expected = dataset.build(rows=rows, projects=projects)
    if name == "discarded":
        _discard_half_the_grouphashes()
        expected = dataset.count_expected()
    if name == "dense":
        _drop_a_quarter_of_the_issue_hashes()
        expected = _count_by_hand()
    # Autovacuum would add its own buffers to the database's counters between readings.
    for table in ("sentry_regressiongroup", "sentry_grouphash", "sentry_groupedmessage"):
        dataset.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    dataset.snapshot()
    figures: dict[str, Any] = {"shape": name, "rows": rows, "projects": projects}
    figures["grouphashes"] = expected.grouphashes
    figures["orphans"] = expected.orphans
    # The process baseline: the command on an empty scope (time: median of 5; peak RSS: the most).
    past_the_end = str(rows + 1)
    empty = [
        run_manage(
            cleanup_args("--dry-run", "--start-after-id", past_the_end, batch_size=1000),
            database_url,
        )
        for _ in range(5)
    ]
    assert all(run.result["scanned"] == 0 for run in empty), empty
    startup = statistics.median(run.seconds for run in empty)
    baseline_rss = max(run.max_rss_mb for run in empty)
    figures["startup_seconds"] = startup
    figures["baseline_rss_mb"] = baseline_rss

    def command(*extra: str) -> tuple[float, float, dict[str, Any], int]:
        # Default flags but the ones named: the first batch holds 1,000 rows, the rest adapt.
        before = database_blocks()
        run = run_manage(cleanup_args(*extra, batch_size=1000), database_url)
        blocks = database_blocks() - before
        return run.seconds - startup, run.max_rss_mb, run.result, blocks

    def statement(sql: str) -> tuple[Statement, int]:
        before = database_blocks()
        result = run_statement(sql)
        return result, database_blocks() - before

    floor_count, floor_census, detect, rss = [], [], [], []
    blocks: dict[str, list[int]] = {"floor": [], "command": []}
    for _ in range(repeat):
        floor_count.append(run_statement(FLOOR_COUNT).seconds)
        census, census_blocks = statement(FLOOR_CENSUS)
        floor_census.append(census.seconds)
        blocks["floor"].append(census_blocks)
        seconds, peak, result, command_blocks = command("--dry-run")
        assert result["would_act"] == expected.orphans, result
        detect.append(seconds)
        blocks["command"].append(command_blocks)
        rss.append(peak)
    figures["detect"] = {
        "floor": min(floor_census),
        "command": min(detect),
        "count_floor": min(floor_count),
        "floor_blocks": min(blocks["floor"]),
        "command_blocks": min(blocks["command"]),
    }
    for label, floor_sql, args, changed in (
        ("delete", FLOOR_DELETE, ("--action", "delete"), expected.orphans),
        ("deactivate", FLOOR_UPDATE, ("--action", "deactivate"), expected.active_orphans),
    ):
        floors, commands = [], []
        blocks = {"floor": [], "command": []}
        sizes: list[dict[str, int]] = []
        for _ in range(repeat):
            dataset.restore()
            floor, floor_blocks = statement(floor_sql)
            assert floor.rows == changed, (label, floor.rows)
            floors.append(floor.seconds)
            blocks["floor"].append(floor_blocks)
            dataset.restore()
            seconds, peak, result, command_blocks = command(*args)
            assert result["acted"] == changed, result
            commands.append(seconds)
            blocks["command"].append(command_blocks)
            sizes.append(result["batch_sizes"])
            rss.append(peak)
        figures[label] = {
            "floor": min(floors),
            "command": min(commands),
            "floor_blocks": min(blocks["floor"]),
            "command_blocks": min(blocks["command"]),
            "batch_sizes": sizes[commands.index(min(commands))],
        }
    # Where the delete's time goes: the same run in-process, its statements timed by step.
    dataset.restore()
    figures["delete_profile"] = profile_cleanup(
        action=CleanupAction.DELETE, dry_run=False, batch_size=1000
    )
    figures["max_rss_mb"] = max(rss)
    figures["rss_above_baseline_bytes_per_orphan"] = (
        (max(rss) - baseline_rss) * 1024 * 1024 / max(expected.orphans, 1)
    )
    figures["peers"] = peers
    if not peers:
        dataset.drop_snapshot()
        return figures

    # Sentry's BulkDeleteQuery: chunks of ids chosen by the predicate, until none is left.
    dataset.restore()
    bulk_sql = (
        "DELETE FROM sentry_regressiongroup WHERE id = ANY(ARRAY("
        f"SELECT rg.id FROM sentry_regressiongroup rg WHERE {ORPHAN}"
        f" AND rg.date_added < now() - interval '24 hours' LIMIT {BULK_DELETE_CHUNK}))"
    )
    started = time.perf_counter()
    deleted = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(bulk_sql)
            if not cursor.rowcount:
                break
            deleted += cursor.rowcount
    assert deleted == expected.orphans
    figures["bulk_delete_query"] = time.perf_counter() - started

    # The seed's design: one query per RegressionGroup (its GroupHash by key), then a delete per
    # orphan; timed on a sample, extrapolated to every row.
    dataset.restore()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, project_id, fingerprint FROM sentry_regressiongroup ORDER BY id LIMIT %s",
            [PER_ROW_SAMPLE],
        )
        sample = cursor.fetchall()
        started = time.perf_counter()
        for row_id, project_id, fingerprint in sample:
            cursor.execute(
                "SELECT group_id FROM sentry_grouphash WHERE project_id = %s"
                " AND hash = md5(convert_to(%s, 'UTF8'))",
                [project_id, fingerprint],
            )
            found = cursor.fetchone()
            if found is None or found[0] is None:
                with transaction.atomic():
                    cursor.execute("DELETE FROM sentry_regressiongroup WHERE id = %s", [row_id])
        per_row = (time.perf_counter() - started) / len(sample)
    figures["per_row_extrapolated"] = per_row * rows
    figures["per_row_sample"] = len(sample)
    dataset.drop_snapshot()
    return figures


def summarize(figures: dict[str, Any]) -> str:
    def ratio(label: str) -> str:
        step = figures[label]
        return (
            f"{label} {step['command']:.2f}s / floor {step['floor']:.2f}s ="
            f" {step['command'] / step['floor']:.2f}x"
            f" (buffers {blocks_ratio(step)})"
        )

    delete = figures["delete"]["command"]
    per_million = 1e6 / figures["rows"]
    peers = ""
    if figures["peers"]:
        peers = (
            f"; BulkDeleteQuery {figures['bulk_delete_query']:.2f}s"
            f" ({figures['bulk_delete_query'] / delete:.2f}x our delete);"
            f" per-row (extrapolated from {figures['per_row_sample']:,})"
            f" {figures['per_row_extrapolated']:.0f}s"
            f" ({figures['per_row_extrapolated'] / delete:.0f}x)"
        )
    count = figures["detect"]["count_floor"]
    return (
        f"{figures['shape']:<15} N={figures['rows']:>9,} orphans={figures['orphans']:,}: "
        + "; ".join(ratio(label) for label in ("detect", "delete", "deactivate"))
        + f"; detect / orphan count alone {count:.2f}s ="
        f" {figures['detect']['command'] / count:.2f}x"
        + peers
        + f"; per M rows: detect {figures['detect']['command'] * per_million:.2f} s,"
        f" delete {delete * per_million:.2f} s;"
        f" peak RSS {figures['max_rss_mb']:.1f} MB (baseline {figures['baseline_rss_mb']:.1f} MB,"
        f" {figures['rss_above_baseline_bytes_per_orphan']:.0f} B per orphan above it)"
    )


def profile_row(figures: dict[str, Any]) -> str:
    profile = figures["delete_profile"]

    def cell(kind: str) -> str:
        step = profile.get(kind, {"seconds": 0.0, "statements": 0})
        return f"{step['seconds']:.2f} s ({int(step['statements'])})"

    steps = ("detect_orphans", "batches", "issue_check", "other", "python", "total")
    return f"| {figures['shape']}, {figures['rows']:,} | " + " | ".join(map(cell, steps)) + " |"


def blocks_ratio(step: dict[str, Any]) -> str:
    """The buffers the command touched over the floor's: what noise does not move."""
    return f"{step['command_blocks'] / max(step['floor_blocks'], 1):.2f}x"


# The targets, each a ratio to the floor measured in the same run.
DETECT_TARGET = 1.25
WRITE_TARGET = 1.15
RSS_LIMIT_MB = 150
RSS_FLAT_TARGET = 1.1
PER_ROW_TARGET = 50


def page_section(report: list[dict[str, Any]], command: str) -> str:
    """The figures page's table of this run, the targets, and which were met."""
    lines = [
        machine_line(command),
        "",
        "| shape, N | detect / floor | delete / floor | deactivate / floor | BulkDeleteQuery"
        " | per-row design (extrapolated) | s per M rows (detect, delete)"
        " | peak RSS (above baseline, per orphan) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    missed: list[str] = []
    for figures in report:
        label = f"{figures['shape']}, {figures['rows']:,}"
        cells = []
        for step, target in (
            ("detect", DETECT_TARGET),
            ("delete", WRITE_TARGET),
            ("deactivate", WRITE_TARGET),
        ):
            figure = figures[step]
            cell = ratio_cell(figure["command"], figure["floor"], target)
            cells.append(f"{cell} (buffers {blocks_ratio(figure)})")
        for step, target in (("detect", DETECT_TARGET), ("delete", WRITE_TARGET)):
            if figures[step]["command"] / figures[step]["floor"] > target:
                missed.append(f"{step} on {label}")
        if figures["deactivate"]["command"] / figures["deactivate"]["floor"] > WRITE_TARGET:
            missed.append(f"deactivate on {label}")
        delete = figures["delete"]["command"]
        if figures["peers"]:
            bulk, per_row = figures["bulk_delete_query"], figures["per_row_extrapolated"]
            cells += [
                f"{bulk:.1f} s, {bulk / delete:.1f}x slower",
                f"{per_row:.0f} s, {per_row / delete:.0f}x slower",
            ]
            if bulk <= delete:
                missed.append(f"faster than BulkDeleteQuery on {label}")
            if per_row / delete < PER_ROW_TARGET:
                missed.append(f"{PER_ROW_TARGET}x the per-row design on {label}")
        else:
            cells += ["", ""]
        per_million = 1e6 / figures["rows"]
        cells.append(
            f"{figures['detect']['command'] * per_million:.2f}, {delete * per_million:.2f}"
        )
        above = figures["max_rss_mb"] - figures["baseline_rss_mb"]
        per_orphan = figures["rss_above_baseline_bytes_per_orphan"]
        cells.append(f"{figures['max_rss_mb']:.1f} MB ({above:.1f} MB, {per_orphan:.0f} B)")
        if figures["max_rss_mb"] >= RSS_LIMIT_MB:
            missed.append(f"peak RSS under {RSS_LIMIT_MB} MB on {label}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    scaling = sorted(
        (f["rows"], f["max_rss_mb"]) for f in report if f["shape"] == "default" and not f["peers"]
    )
    at_1m = [f["max_rss_mb"] for f in report if f["shape"] == "default" and f["rows"] == 1_000_000]
    flat = ""
    if scaling and at_1m:
        largest_rows, largest_rss = scaling[-1]
        growth = largest_rss / at_1m[0]
        flat = f" Peak RSS from 1M to {largest_rows:,} rows: {growth:.2f}x."
        if largest_rows > 1_000_000 and growth > RSS_FLAT_TARGET:
            missed.append(f"peak RSS flat from 1M to {largest_rows:,} (<= {RSS_FLAT_TARGET}x)")
    lines += [
        "",
        "Floors: detection's is one statement giving what detection gives (rows scanned,"
        " orphans by reason, too recent, the eligible count and ids); delete's and deactivate's"
        " one DELETE or UPDATE of the eligible orphans. Each time is the best of interleaved"
        " rounds; buffers: shared hits plus reads over the database (pg_stat_database), command"
        " over floor. Delete's batch sizes (first 1,000, adapted to --batch-time): "
        + "; ".join(
            f"{f['shape']} {f['rows']:,}: {f['delete']['batch_sizes']['min']}"
            f" to {f['delete']['batch_sizes']['max']}"
            for f in report
            if f["delete"].get("batch_sizes")
        )
        + ".",
        "",
        "Where the delete's time goes (the same run in-process; seconds, statements):",
        "",
        "| shape, N | detection | DELETE | check before the commit | savepoints and other"
        " statements | commits and Python | total |",
        "|---|---|---|---|---|---|---|",
        *(profile_row(f) for f in report if "delete_profile" in f),
        "",
        f"Targets: detect <= {DETECT_TARGET}x, delete and deactivate <= {WRITE_TARGET}x (bold:"
        f" above its target), peak RSS under {RSS_LIMIT_MB} MB and flat from 1M up"
        f" (<= {RSS_FLAT_TARGET}x), faster than BulkDeleteQuery, >= {PER_ROW_TARGET}x faster than"
        f" the per-row design.{flat}",
        "",
        "**Not met:** " + "; ".join(missed) + "." if missed else "**Every target met.**",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shapes")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--scale",
        default="100000,3000000",
        help="Extra row counts of the default shape, without the peers (the scaling table).",
    )
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--shapes", default="default,discarded,dense,large_projects", help="Shapes at --rows."
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--page",
        type=Path,
        default=DEFAULT_PAGE,
        help="The figures page whose 'shapes' section this run rewrites (default: %(default)s).",
    )
    parser.add_argument("--no-page", action="store_true", help="Leave the figures page alone.")
    options = parser.parse_args(argv)
    setup_django(options.database_url)
    from benchmarks.run import migrate

    migrate(options.database_url)
    project_counts = {"default": 1_000, "discarded": 1_000, "dense": 1_000, "large_projects": 10}
    shapes = [name for name in options.shapes.split(",") if name]
    runs = [(name, options.rows, project_counts[name], True) for name in shapes]
    runs += [("default", int(n), 1_000, False) for n in options.scale.split(",") if n]
    report = []
    for name, rows, projects, peers in runs:
        figures = measure_shape(
            name,
            rows=rows,
            projects=projects,
            database_url=options.database_url,
            repeat=options.repeat,
            peers=peers,
        )
        report.append(figures)
        print(summarize(figures), flush=True)
        if options.json:
            options.json.write_text(json.dumps(report, indent=2) + "\n")
    if not options.no_page:
        command = command_line("python -m benchmarks.shapes", None if argv is None else list(argv))
        write_section(options.page, "shapes", page_section(report, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
