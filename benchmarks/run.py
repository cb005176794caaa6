"""Benchmark the cleanup and the lookup against the SQL floor on PostgreSQL.

    .venv/bin/python -m benchmarks.run [--rows 1000000] [--json PATH] [--database-url URL]

On one dataset (see ``benchmarks.dataset``), in one run:

- A. detection: ``cleanup_orphaned_regressions --dry-run`` vs ``SELECT count(*) … NOT EXISTS``;
- B. delete: the command vs one ``DELETE … NOT EXISTS`` (each on a fresh copy of the data);
- C. deactivate: ``--action deactivate`` vs one ``UPDATE … NOT EXISTS`` (each on a fresh copy);
- D. ``bulk_get_groups_from_fingerprints`` for 10,000 pairs over 1,000 projects vs a per-pair loop
  and vs upstream's UNION of one query per project, with the statements each issues;
- E. peak RSS of the delete command at N and at N/10;
- shards: ``--shard 0/2`` and ``--shard 1/2`` in parallel vs one unsharded delete.

Commands run as real subprocesses; their start-up (the median time of ``manage.py check``) is
subtracted. Each figure is the best of ``--repeat`` runs. The database is emptied and refilled:
by default the ``bench`` database, which must be one of the benchmark's own.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/bench"
DEFAULT_ROWS = 1_000_000
DEFAULT_PROJECTS = 1_000
DEFAULT_LOOKUP_PAIRS = 10_000
DEFAULT_REPEAT = 3
RESULTS_DIR = Path(__file__).resolve().parent / "results"

# The targets, at the default batch size.
DETECTION_TARGET = 1.5
WRITE_TARGET = 1.25
LOOKUP_LOOP_TARGET = 10.0
LOOKUP_UNION_TARGET = 1.0
MEMORY_TARGET_MB = 150.0
MEMORY_GROWTH_TARGET = 1.2


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Benchmark the orphan cleanup and the issue lookup against the SQL floor.",
    )
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="RegressionGroups (N).")
    parser.add_argument("--projects", type=int, default=DEFAULT_PROJECTS)
    parser.add_argument("--batch-size", type=int, default=1000, help="The command's batch size.")
    parser.add_argument(
        "--lookup-pairs", type=int, default=DEFAULT_LOOKUP_PAIRS, help="Pairs looked up in D."
    )
    parser.add_argument(
        "--repeat", type=int, default=DEFAULT_REPEAT, help="Runs of each figure; the best counts."
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help="The PostgreSQL database to migrate, fill and benchmark (its data is replaced).",
    )
    parser.add_argument(
        "--json",
        type=Path,
        help="Where to write the figures (default: benchmarks/results/benchmark-<rows>.json).",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="Also record EXPLAIN ANALYZE of the command's statements and the floors.",
    )
    options = parser.parse_args(argv)
    name = urlsplit(options.database_url).path.lstrip("/")
    if "bench" not in name and not name.startswith("test"):
        parser.error(f"--database-url: refusing to replace the data of database {name!r}")
    if options.rows < 20 * 10 or options.projects < 1 or options.repeat < 1:
        parser.error("--rows must be at least 200; --projects and --repeat at least 1")
    return options


def setup_django(database_url: str) -> None:
    """Point the in-process Django at the benchmark's database (before anything imports models)."""
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("REGRESSION_TRACKING_LOG_LEVEL", "WARNING")
    import django

    django.setup()


def create_database(database_url: str) -> None:
    """Create the benchmark's database when the server does not have it yet."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if not exists:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def migrate(database_url: str) -> None:
    """Create the database if it is missing, then apply the migrations."""
    from benchmarks.commands import run_manage

    create_database(database_url)
    run_manage(["migrate", "--no-input"], database_url)


def best(samples: Sequence[float]) -> float:
    return min(samples)


def ratio(value: float, reference: float) -> float:
    return value / reference if reference > 0 else float("inf")


def run_benchmark(
    *,
    database_url: str,
    rows: int = DEFAULT_ROWS,
    projects: int = DEFAULT_PROJECTS,
    batch_size: int = 1000,
    lookup_pairs: int = DEFAULT_LOOKUP_PAIRS,
    repeat: int = DEFAULT_REPEAT,
    explain: bool = False,
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """Every figure of the benchmark, as a JSON-ready dict; Django must already use database_url.

    Raises when a command or a floor statement does not do exactly the work the data calls for.
    """
    from benchmarks import dataset
    from benchmarks.alternatives import measure_alternatives
    from benchmarks.commands import cleanup_args, run_manage, run_parallel, startup_seconds
    from benchmarks.floor import (
        FLOOR_COUNT,
        FLOOR_DELETE,
        FLOOR_UPDATE,
        explain_plan,
        profile_cleanup,
        run_statement,
    )
    from benchmarks.lookup import SHAPES, time_shape
    from benchmarks.lookup import lookup_pairs as make_pairs
    from regression_tracking.services import CleanupAction

    started = time.perf_counter()
    report: dict[str, Any] = {
        "rows": rows,
        "projects": projects,
        "batch_size": batch_size,
        "repeat": repeat,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "postgresql": dataset.execute("SHOW server_version")[0][0],
        "statistic": f"best of {repeat}",
    }

    def check(label: str, got: int, wanted: int) -> None:
        if got != wanted:
            raise RuntimeError(f"{label}: {got} rows, expected {wanted}")

    progress("migrate")
    migrate(database_url)
    progress(f"build {rows} rows")
    build_started = time.perf_counter()
    expected = dataset.build(rows=rows, projects=projects)
    dataset.snapshot()
    report["dataset"] = {**asdict(expected), "build_seconds": time.perf_counter() - build_started}

    startup = startup_seconds(database_url, repeat=max(3, repeat))
    report["startup_seconds"] = startup

    def command(*extra: str) -> tuple[float, float, dict[str, Any]]:
        run = run_manage(cleanup_args(*extra, batch_size=batch_size), database_url)
        return run.seconds - startup, run.max_rss_mb, run.result

    # A: detection, on the built data (nothing changes it).
    progress("A: detection")
    floor_a, command_a, service_a, rss_a = [], [], [], []
    for _ in range(repeat):
        statement = run_statement(FLOOR_COUNT)
        check("A floor", statement.rows, expected.orphans)
        floor_a.append(statement.seconds)
        seconds, rss, result = command("--dry-run")
        check("A command", result["would_act"], expected.orphans)
        command_a.append(seconds)
        service_a.append(result["elapsed_seconds"])
        rss_a.append(rss)
    report["A"] = _figure(floor_a, command_a, service_a, DETECTION_TARGET)
    report["A"]["max_rss_mb"] = max(rss_a)
    report["profile"] = {
        "dry_run": profile_cleanup(action=CleanupAction.DELETE, dry_run=True, batch_size=batch_size)
    }

    # D: the lookup, also on the built data.
    progress("D: lookup")
    pairs = make_pairs(pairs=lookup_pairs, projects=projects)
    runs: dict[str, list[Any]] = {name: [] for name in SHAPES}
    for _ in range(repeat):
        for name, shape in SHAPES.items():
            runs[name].append(time_shape(shape, pairs))
    resolved = {name: shape_runs[-1].resolved for name, shape_runs in runs.items()}
    for name, result_map in resolved.items():
        check(f"D {name}", len(result_map), len(pairs))
        if result_map != resolved["bulk"]:
            raise RuntimeError(f"D: {name} resolves the pairs differently from the service")
    lookup = {
        name: {
            "seconds": best([run.seconds for run in shape_runs]),
            "samples": [run.seconds for run in shape_runs],
            "statements": shape_runs[-1].statements,
        }
        for name, shape_runs in runs.items()
    }
    bulk = lookup["bulk"]["seconds"]
    report["D"] = {
        "pairs": len(pairs),
        "projects": len({project_id for project_id, _ in pairs}),
        **lookup,
        "speedup_vs_per_pair_loop": ratio(lookup["per_pair_loop"]["seconds"], bulk),
        "speedup_vs_upstream_union": ratio(lookup["upstream_union"]["seconds"], bulk),
    }
    report["D"]["pass"] = (
        report["D"]["speedup_vs_per_pair_loop"] >= LOOKUP_LOOP_TARGET
        and report["D"]["speedup_vs_upstream_union"] >= LOOKUP_UNION_TARGET
        and lookup["bulk"]["statements"] == 1
    )

    # B and C: every destructive run starts from the snapshot.
    write_runs = (
        ("B", FLOOR_DELETE, ["--action", "delete"], expected.orphans),
        ("C", FLOOR_UPDATE, ["--action", "deactivate"], expected.active_orphans),
    )
    rss_b: list[float] = []
    for label, floor_sql, args, rows_changed in write_runs:
        progress(f"{label}: {args[-1]}")
        floor_samples, command_samples, service_samples = [], [], []
        for _ in range(repeat):
            dataset.restore()
            statement = run_statement(floor_sql)
            check(f"{label} floor", statement.rows, rows_changed)
            floor_samples.append(statement.seconds)
            dataset.restore()
            seconds, rss, result = command(*args)
            check(f"{label} command", result["acted"], rows_changed)
            command_samples.append(seconds)
            service_samples.append(result["elapsed_seconds"])
            if label == "B":
                rss_b.append(rss)
        report[label] = _figure(floor_samples, command_samples, service_samples, WRITE_TARGET)
    for label, action in (
        ("delete", CleanupAction.DELETE),
        ("deactivate", CleanupAction.DEACTIVATE),
    ):
        dataset.restore()
        report["profile"][label] = profile_cleanup(
            action=action, dry_run=False, batch_size=batch_size
        )

    # Scale out: two shards in parallel vs the unsharded delete of B.
    progress("shards")
    sharded = []
    for _ in range(repeat):
        dataset.restore()
        shard_runs = run_parallel(
            [cleanup_args("--shard", f"{k}/2", batch_size=batch_size) for k in range(2)],
            database_url,
        )
        check("shards", sum(run.result["acted"] for run in shard_runs), expected.orphans)
        sharded.append(max(run.seconds for run in shard_runs) - startup)
    report["shards"] = {
        "unsharded_seconds": report["B"]["command_seconds"],
        "two_shards_parallel_seconds": best(sharded),
        "samples": sharded,
        "speedup": ratio(report["B"]["command_seconds"], best(sharded)),
    }

    progress("alternatives")
    dataset.restore()
    alternatives = measure_alternatives(
        batch_size=batch_size, repeat=repeat, orphans=expected.orphans
    )
    report["alternatives"] = _with_ratios(alternatives, report)

    if explain:
        report["explain"] = _explain_all(
            explain_plan, [FLOOR_COUNT, FLOOR_DELETE, FLOOR_UPDATE], batch_size=batch_size
        )

    # E: peak RSS of the delete command at N (from B) and at N/10 (a smaller dataset).
    progress(f"E: memory at {rows // 10} rows")
    small = dataset.build(rows=rows // 10, projects=projects)
    dataset.snapshot()
    rss_small = []
    for _ in range(repeat):
        dataset.restore()
        _, rss, result = command("--action", "delete")
        check("E command", result["acted"], small.orphans)
        rss_small.append(rss)
    dataset.drop_snapshot()
    peak, peak_small = max(rss_b), max(rss_small)
    report["E"] = {
        "max_rss_mb": peak,
        "max_rss_mb_at_tenth": peak_small,
        "rows_at_tenth": small.rows,
        "growth": ratio(peak, peak_small),
        "target_mb": MEMORY_TARGET_MB,
        "target_growth": MEMORY_GROWTH_TARGET,
        "pass": peak < MEMORY_TARGET_MB and ratio(peak, peak_small) <= MEMORY_GROWTH_TARGET,
    }
    report["total_seconds"] = time.perf_counter() - started
    return report


def _figure(
    floor: list[float], command: list[float], service: list[float], target: float
) -> dict[str, Any]:
    value = ratio(best(command), best(floor))
    return {
        "floor_seconds": best(floor),
        "command_seconds": best(command),
        "service_seconds": best(service),
        "ratio": value,
        # On a shared machine the best run is the steadiest figure; the median says how steady.
        "ratio_of_medians": ratio(statistics.median(command), statistics.median(floor)),
        "target": target,
        "pass": value <= target,
        "floor_samples": floor,
        "command_samples": command,
    }


def _with_ratios(alternatives: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """The alternatives with each one's share of the floor it stands against."""
    floors = {"detection": report["A"]["floor_seconds"], "delete": report["B"]["floor_seconds"]}
    ratios = {
        name: ratio(seconds, floors["delete" if "delete" in name else "detection"])
        for name, seconds in alternatives.items()
        if isinstance(seconds, float)
    }
    indexed = alternatives["with_live_key_index"]
    ratios.update(
        {
            f"with_live_key_index.{name}": ratio(
                seconds, floors["delete" if "delete" in name else "detection"]
            )
            for name, seconds in indexed.items()
        }
    )
    return {**alternatives, "ratio_to_floor": ratios}


def _explain_all(
    explain_plan: Callable[[str], str], floors: list[str], *, batch_size: int
) -> dict[str, str]:
    """EXPLAIN ANALYZE of the statements the cleanup's dry run runs, then of the floors.

    Each plan starts from the snapshot: even rolled back, an EXPLAIN ANALYZE of a DELETE or an
    UPDATE clears visibility-map bits and leaves dead rows that would slow the next plan.
    """
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from benchmarks import dataset
    from regression_tracking.services import cleanup_orphaned_regressions

    dataset.restore()
    with CaptureQueriesContext(connection) as captured:
        cleanup_orphaned_regressions(dry_run=True, max_rows=batch_size)
    plans = {}
    for query in captured.captured_queries:
        sql = query["sql"]
        if sql.upper().startswith("SELECT") and "advisory" not in sql and "set_config" not in sql:
            plans[f"command: {sql[:60]}"] = explain_plan(sql)
    for number, sql in enumerate(floors, 1):
        dataset.restore()
        plans[f"floor {number}: {sql[:60]}"] = explain_plan(sql)
    dataset.restore()
    return plans


ALTERNATIVE_LABELS = (
    ("detection_without_batch_rechecks_in_process", "A without the dry run's batch re-checks"),
    ("recheck_batches_id_list", "dry-run re-checks, ids as 1,000 parameters"),
    ("recheck_batches_id_array", "dry-run re-checks, ids as one array"),
    ("delete_batches_id_list", "delete batches, ids as 1,000 parameters"),
    ("delete_batches_id_array", "delete batches, ids as one array"),
    ("with_live_key_index.floor_count", "live-key partial index: floor A"),
    (
        "with_live_key_index.detection_without_batch_rechecks_in_process",
        "live-key partial index: A without re-checks",
    ),
    ("with_live_key_index.recheck_batches_id_array", "live-key partial index: re-checks, array"),
    ("with_live_key_index.delete_batches_id_array", "live-key partial index: deletes, array"),
)

TABLE_HEADER = ("figure", "measured", "reference", "ratio", "target", "result")


def format_table(report: dict[str, Any]) -> str:
    """The figures and ratios as a fixed-width text table."""

    def verdict(passed: bool) -> str:
        return "pass" if passed else "FAIL"

    rows: list[tuple[str, ...]] = []
    for label, name in (("A", "detection (--dry-run)"), ("B", "delete"), ("C", "deactivate")):
        figure = report[label]
        rows.append(
            (
                f"{label} {name}",
                f"{figure['command_seconds']:.3f} s",
                f"floor {figure['floor_seconds']:.3f} s",
                f"{figure['ratio']:.2f}x",
                f"<= {figure['target']:.2f}x",
                verdict(figure["pass"]),
            )
        )
    lookup = report["D"]
    rows.append(
        (
            f"D lookup, {lookup['pairs']} pairs",
            f"{lookup['bulk']['seconds']:.3f} s, {lookup['bulk']['statements']} st",
            f"loop {lookup['per_pair_loop']['seconds']:.3f} s, "
            f"{lookup['per_pair_loop']['statements']} st",
            f"{lookup['speedup_vs_per_pair_loop']:.1f}x faster",
            f">= {LOOKUP_LOOP_TARGET:.0f}x, 1 st",
            verdict(lookup["pass"]),
        )
    )
    rows.append(
        (
            "",
            "",
            f"UNION {lookup['upstream_union']['seconds']:.3f} s, "
            f"{lookup['upstream_union']['statements']} st",
            f"{lookup['speedup_vs_upstream_union']:.1f}x faster",
            f">= {LOOKUP_UNION_TARGET:.0f}x",
            "",
        )
    )
    memory = report["E"]
    rows.append(
        (
            "E peak RSS (delete)",
            f"{memory['max_rss_mb']:.1f} MB",
            f"N/10: {memory['max_rss_mb_at_tenth']:.1f} MB",
            f"{memory['growth']:.2f}x",
            f"< {MEMORY_TARGET_MB:.0f} MB, <= {MEMORY_GROWTH_TARGET}x",
            verdict(memory["pass"]),
        )
    )
    shards = report["shards"]
    rows.append(
        (
            "2 shards in parallel",
            f"{shards['two_shards_parallel_seconds']:.3f} s",
            f"unsharded {shards['unsharded_seconds']:.3f} s",
            f"{shards['speedup']:.2f}x faster",
            "(measured)",
            "",
        )
    )
    widths = [max(len(row[i]) for row in (TABLE_HEADER, *rows)) for i in range(len(TABLE_HEADER))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (TABLE_HEADER, *rows)
    ]
    alternatives = report["alternatives"]
    ratios = alternatives["ratio_to_floor"]
    lines += ["", "hand-written alternatives, in-process (no start-up)   seconds  x floor"]
    for name, label in ALTERNATIVE_LABELS:
        path = name.split(".")
        seconds = alternatives[path[0]] if len(path) == 1 else alternatives[path[0]][path[1]]
        lines.append(f"  {label:<50}  {seconds:7.3f}  {ratios[name]:6.2f}x")
    data = report["dataset"]
    intro = (
        f"N = {report['rows']:,} RegressionGroups over {report['projects']:,} projects, "
        f"{data['grouphashes']:,} GroupHashes, {data['orphans']:,} orphans; "
        f"PostgreSQL {report['postgresql']}; batch size {report['batch_size']}; "
        f"{report['statistic']}; command start-up {report['startup_seconds']:.3f} s subtracted."
    )
    return "\n".join([intro, *lines])


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    setup_django(options.database_url)

    def progress(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    try:
        report = run_benchmark(
            database_url=options.database_url,
            rows=options.rows,
            projects=options.projects,
            batch_size=options.batch_size,
            lookup_pairs=options.lookup_pairs,
            repeat=options.repeat,
            explain=options.explain,
            progress=progress,
        )
    except (RuntimeError, subprocess.SubprocessError) as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    path = options.json or RESULTS_DIR / f"benchmark-{options.rows}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(report))
    print(f"figures written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
