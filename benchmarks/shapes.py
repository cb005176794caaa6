"""Issue 12 item 5: the cleanup against the floor and two peers on more than one data shape.

    .venv/bin/python -m benchmarks.shapes [--database-url URL] [--scale 100000,1000000]

Shapes (each built with ``INSERT … SELECT generate_series`` by ``benchmarks.dataset``):

- ``default``: N rows over 1,000 projects, 10% orphans (the benchmark's own data);
- ``discarded``: as many GroupHashes without a group as with one (Sentry's "delete and discard");
- ``large_projects``: 10 projects of N/10 rows each.

Per shape, in-process (no command start-up): detection (``detect_orphans``) against the
one-statement count; the delete (``cleanup_orphaned_regressions``) against one ``DELETE … NOT
EXISTS``; Sentry's ``BulkDeleteQuery`` pattern on the orphan predicate (``DELETE … WHERE id =
ANY(ARRAY(SELECT id … LIMIT 10000))`` until no row is left); and the seed's per-row design (a
query per RegressionGroup), timed on a sample of rows and extrapolated to N.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

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


def measure_shape(name: str, *, rows: int, projects: int) -> dict[str, Any]:
    from django.db import connection, transaction
    from django.utils import timezone

    from benchmarks import dataset
    from benchmarks.floor import FLOOR_COUNT, FLOOR_DELETE, ORPHAN, run_statement
    from regression_tracking.services import cleanup_orphaned_regressions, detect_orphans

    expected = dataset.build(rows=rows, projects=projects)
    if name == "discarded":
        _discard_half_the_grouphashes()
        expected = dataset.count_expected()
    dataset.snapshot()
    cutoff = timezone.now() - timedelta(hours=24)
    figures: dict[str, Any] = {"shape": name, "rows": rows, "projects": projects}
    figures["grouphashes"] = expected.grouphashes
    figures["orphans"] = expected.orphans

    floor_count = min(run_statement(FLOOR_COUNT).seconds for _ in range(2))
    detect = []
    for _ in range(2):
        started = time.perf_counter()
        detection = detect_orphans(cutoff=cutoff)
        detect.append(time.perf_counter() - started)
        assert len(detection.eligible_ids) == expected.orphans, detection
    figures["detect"] = {"floor": floor_count, "service": min(detect)}

    dataset.restore()
    floor_delete = run_statement(FLOOR_DELETE)
    assert floor_delete.rows == expected.orphans
    dataset.restore()
    started = time.perf_counter()
    result = cleanup_orphaned_regressions(min_age=timedelta(hours=24))
    service_delete = time.perf_counter() - started
    assert result.acted == expected.orphans
    figures["delete"] = {"floor": floor_delete.seconds, "service": service_delete}

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
    figures["max_rss_mb_so_far"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


def summarize(figures: dict[str, Any]) -> str:
    detect, delete = figures["detect"], figures["delete"]
    total = delete["service"]
    return (
        f"{figures['shape']:<15} N={figures['rows']:>9,} detect {detect['service']:.2f}s / floor"
        f" {detect['floor']:.2f}s = {detect['service'] / detect['floor']:.2f}x;"
        f" delete {total:.2f}s / floor {delete['floor']:.2f}s = {total / delete['floor']:.2f}x;"
        f" BulkDeleteQuery {figures['bulk_delete_query']:.2f}s"
        f" ({figures['bulk_delete_query'] / total:.2f}x ours);"
        f" per-row (extrapolated) {figures['per_row_extrapolated']:.0f}s"
        f" ({figures['per_row_extrapolated'] / total:.0f}x ours);"
        f" s per M rows (delete) {total / figures['rows'] * 1e6:.2f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shapes")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--scale", default="100000", help="Extra row counts, default shape.")
    parser.add_argument("--json", type=Path)
    options = parser.parse_args(argv)
    setup_django(options.database_url)
    from benchmarks.run import migrate

    migrate(options.database_url)
    runs = [
        ("default", options.rows, 1_000),
        ("discarded", options.rows, 1_000),
        ("large_projects", options.rows, 10),
    ]
    runs += [("default", int(n), 1_000) for n in options.scale.split(",") if n]
    report = []
    for name, rows, projects in runs:
        figures = measure_shape(name, rows=rows, projects=projects)
        report.append(figures)
        print(summarize(figures), flush=True)
    if options.json:
        options.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
