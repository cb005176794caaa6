"""The admin's orphan overview against detection's floor, on the default and 'discarded' shapes.

    .venv/bin/python -m benchmarks.overview [--database-url URL] [--rows 1000000] [--repeat 3]

Per shape (built by ``benchmarks.dataset``; 'discarded' as ``benchmarks.shapes`` builds it), in
interleaved rounds on the same data:

- the floor: ``benchmarks.floor.FLOOR_CENSUS``, one hand-written statement with detection's whole
  output (rows scanned, orphans by reason, too recent, the eligible count and ids);
- the overview page: the admin's view, in-process, rendered (its census with the breakdown, the
  projects' slugs, the charts), for a superuser, so no session or permission query;
- detection as the dry run runs it (``detect_orphans``, in-process, the ids collected), beside it.

Each figure is the best of the rounds; buffers (shared hits plus reads over the database,
``pg_stat_database``) are the overview's over the floor's. Target: the page within
OVERVIEW_TARGET times the floor. The database is emptied and refilled: by default ``bench``,
which must be one of the benchmark's own.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.page import DEFAULT_PAGE, command_line, machine_line, ratio_cell, write_section

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/bench"
DEFAULT_ROWS = 1_000_000
DEFAULT_PROJECTS = 1_000
DEFAULT_REPEAT = 3
SHAPES = ("default", "discarded")
OVERVIEW_TARGET = 1.25


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.overview",
        description="The admin's orphan overview page against detection's one-statement floor.",
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help="The PostgreSQL database to migrate, fill and benchmark (its data is replaced).",
    )
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="RegressionGroups (N).")
    parser.add_argument("--projects", type=int, default=DEFAULT_PROJECTS)
    parser.add_argument(
        "--repeat", type=int, default=DEFAULT_REPEAT, help="Rounds per shape; the best counts."
    )
    parser.add_argument(
        "--shapes", default=",".join(SHAPES), help="Shapes to measure (default: %(default)s)."
    )
    parser.add_argument("--json", type=Path, help="Also write the figures to this file.")
    parser.add_argument(
        "--page",
        type=Path,
        default=DEFAULT_PAGE,
        help="The figures page whose 'overview' section this run rewrites (default: %(default)s).",
    )
    parser.add_argument("--no-page", action="store_true", help="Leave the figures page alone.")
    options = parser.parse_args(argv)
    name = urlsplit(options.database_url).path.lstrip("/")
    if "bench" not in name and not name.startswith("test"):
        parser.error(f"--database-url: refusing to replace the data of database {name!r}")
    shapes = [shape for shape in options.shapes.split(",") if shape]
    if not shapes or set(shapes) - set(SHAPES):
        parser.error(f"--shapes: choose from {', '.join(SHAPES)}")
    options.shapes = shapes
    if options.rows < 200 or options.projects < 1 or options.repeat < 1:
        parser.error("--rows must be at least 200; --projects and --repeat at least 1")
    return options


def render_overview() -> Callable[[], Any]:
    """The overview page as the admin serves it, rendered in-process for a superuser."""
    from django.contrib import admin
    from django.contrib.auth.models import User
    from django.test import RequestFactory
    from django.urls import reverse

    from regression_tracking.admin.overview_view import URL_NAME, overview_view
    from regression_tracking.models import RegressionGroup

    model_admin = admin.site.get_model_admin(RegressionGroup)
    request = RequestFactory(SERVER_NAME="localhost").get(reverse(f"admin:{URL_NAME}"))
    request.user = User(username="benchmark", is_active=True, is_staff=True, is_superuser=True)

    def render() -> Any:
        response = overview_view(request, model_admin)
        response.render()
        assert response.status_code == 200
        return response

    return render


def measure_shape(name: str, *, rows: int, projects: int, repeat: int) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from benchmarks import dataset
    from benchmarks.floor import FLOOR_CENSUS, database_blocks, run_statement
    from benchmarks.shapes import _discard_half_the_grouphashes
    from regression_tracking.admin.overview import orphan_overview
    from regression_tracking.services import GRACE_PERIOD, detect_orphans

    expected = dataset.build(rows=rows, projects=projects)
    if name == "discarded":
        _discard_half_the_grouphashes()
        expected = dataset.count_expected()
    # Autovacuum would add its own buffers to the database's counters between readings.
    for table in ("sentry_regressiongroup", "sentry_grouphash", "sentry_groupedmessage"):
        dataset.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    overview = orphan_overview()
    assert (overview.regression_groups, overview.orphans) == (rows, expected.orphans), overview
    with CaptureQueriesContext(connection) as captured:
        render = render_overview()
        render()
    statements = len(captured.captured_queries)

    def floor() -> None:
        run_statement(FLOOR_CENSUS)

    def detection() -> None:
        detect_orphans(cutoff=timezone.now() - GRACE_PERIOD)

    def timed(call: Callable[[], Any]) -> tuple[float, int]:
        before = database_blocks()
        started = time.perf_counter()
        call()
        seconds = time.perf_counter() - started
        return seconds, database_blocks() - before

    samples: dict[str, list[tuple[float, int]]] = {"floor": [], "overview": [], "detection": []}
    for _ in range(repeat):
        samples["floor"].append(timed(floor))
        samples["overview"].append(timed(render))
        samples["detection"].append(timed(detection))
    figures: dict[str, Any] = {
        "shape": name,
        "rows": rows,
        "projects": projects,
        "orphans": expected.orphans,
        "overview_statements": statements,
    }
    for label, runs in samples.items():
        figures[label] = min(seconds for seconds, _blocks in runs)
        figures[f"{label}_blocks"] = min(blocks for _seconds, blocks in runs)
    return figures


def blocks_ratio(figures: dict[str, Any], label: str) -> str:
    return f"{figures[f'{label}_blocks'] / max(figures['floor_blocks'], 1):.2f}x"


def summarize(figures: dict[str, Any]) -> str:
    floor = figures["floor"]
    return (
        f"{figures['shape']:<10} N={figures['rows']:>9,} orphans={figures['orphans']:,}:"
        f" overview page {figures['overview']:.2f}s / floor {floor:.2f}s ="
        f" {figures['overview'] / floor:.2f}x (buffers {blocks_ratio(figures, 'overview')},"
        f" {figures['overview_statements']} statements); detection {figures['detection']:.2f}s"
        f" = {figures['detection'] / floor:.2f}x (buffers {blocks_ratio(figures, 'detection')})"
    )


def page_section(report: list[dict[str, Any]], command: str) -> str:
    """The figures page's table of this run and whether the target was met."""
    lines = [
        machine_line(command),
        "",
        "| shape, N | orphans | overview page / floor | detection (the dry run's) / floor"
        " | statements of the page |",
        "|---|---|---|---|---|",
    ]
    missed = []
    for figures in report:
        label = f"{figures['shape']}, {figures['rows']:,}"
        overview = ratio_cell(figures["overview"], figures["floor"], OVERVIEW_TARGET)
        detection = (
            f"{figures['detection']:.2f} s / {figures['floor']:.2f} s ="
            f" {figures['detection'] / figures['floor']:.2f}x"
        )
        lines.append(
            f"| {label} | {figures['orphans']:,}"
            f" | {overview} (buffers {blocks_ratio(figures, 'overview')})"
            f" | {detection} (buffers {blocks_ratio(figures, 'detection')})"
            f" | {figures['overview_statements']} |"
        )
        if figures["overview"] / figures["floor"] > OVERVIEW_TARGET:
            missed.append(label)
    lines += [
        "",
        f"Target: the overview page within {OVERVIEW_TARGET}x the floor (bold: above it). Each"
        " time is the best of interleaved rounds, in-process on an open connection.",
        "",
        "**Not met:** " + "; ".join(missed) + "." if missed else "**Every target met.**",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    from benchmarks.run import migrate, setup_django

    setup_django(options.database_url)
    migrate(options.database_url)
    report = []
    for shape in options.shapes:
        figures = measure_shape(
            shape, rows=options.rows, projects=options.projects, repeat=options.repeat
        )
        report.append(figures)
        print(summarize(figures), flush=True)
        if options.json:
            options.json.write_text(json.dumps(report, indent=2) + "\n")
    if not options.no_page:
        command = command_line(
            "python -m benchmarks.overview", None if argv is None else list(argv)
        )
        write_section(options.page, "overview", page_section(report, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
