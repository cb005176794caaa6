"""The detector's view with orphans against the same call with every issue linked.

    .venv/bin/python -m benchmarks.detector_view --database-url postgres://postgres@127.0.0.1:5432/postgres

Creates (if missing) and refills its own database ``bench_detector`` on the server that
``--database-url`` names: one project of ``--rows`` RegressionGroups (default 100,000), each with
its issue, beside another project of the same size. Then it times, median of ``--repeat`` calls:

- ``get_issue_groups_for_regressions`` of 100 RegressionGroups of the large project, all linked;
- the same with 10 of the 100 orphaned (their GroupHashes deleted, as an issue deletion does);
- ``bulk_get_groups_from_fingerprints`` of the same 100 pairs, both ways (its missing-pair path
  looks the orphaned RegressionGroups up to name them in the WARNING).

The database is migrated, so it has the issue-key index ``regressiongroup_issue_key_idx``
(``(project_id, md5(fingerprint))``, migration 0002), which the missing-pair path of
``bulk_get_groups_from_fingerprints`` uses on a UTF8 database.

Target: the detector's view with 10% missing at most 2 times the all-linked call.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from benchmarks.page import DEFAULT_PAGE, command_line, machine_line, write_section

DATABASE_NAME = "bench_detector"
DEFAULT_ROWS = 100_000
DEFAULT_REPEAT = 25
HELD = 100
ORPHANED = 10
TARGET = 2.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.detector_view", description=__doc__)
    parser.add_argument(
        "--database-url",
        required=True,
        help=f"Any database of the PostgreSQL server to use; the benchmark uses {DATABASE_NAME}.",
    )
    parser.add_argument(
        "--rows", type=int, default=DEFAULT_ROWS, help="RegressionGroups per project."
    )
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT)
    parser.add_argument("--json", help="Also write the figures to this file.")
    parser.add_argument(
        "--page",
        type=Path,
        default=DEFAULT_PAGE,
        help="The figures page whose 'detector_view' section this run rewrites "
        "(default: %(default)s).",
    )
    parser.add_argument("--no-page", action="store_true", help="Leave the figures page alone.")
    options = parser.parse_args(argv)
    if options.rows < 2 * HELD or options.repeat < 1:
        parser.error(f"--rows must be at least {2 * HELD} and --repeat at least 1")
    return options


def bench_url(server_url: str) -> str:
    parts = urlsplit(server_url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise SystemExit("--database-url must be a PostgreSQL URL")
    return urlunsplit(parts._replace(path=f"/{DATABASE_NAME}"))


def create_database(server_url: str) -> None:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')


def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # The 10 WARNINGs per call go nowhere: the figure is the lookup's, not the console's.
    os.environ["REGRESSION_TRACKING_LOG_LEVEL"] = "ERROR"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def fill(rows: int) -> None:
    """Two projects of ``rows`` RegressionGroups each, every one with its Group and GroupHash."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE sentry_grouphash, sentry_groupedmessage, sentry_regressiongroup,"
            " sentry_project, sentry_organization RESTART IDENTITY CASCADE"
        )
        cursor.execute(
            "INSERT INTO sentry_organization (name, slug, status, date_added)"
            " VALUES ('bench', 'bench', 0, now())"
        )
        cursor.execute(
            "INSERT INTO sentry_project (organization_id, slug, name, status, date_added)"
            " SELECT 1, 'p' || p, 'P' || p, 0, now() FROM generate_series(1, 2) p"
        )
        cursor.execute(
            "INSERT INTO sentry_regressiongroup (date_added, date_updated, date_regressed, version,"
            " active, project_id, type, fingerprint, baseline, regressed)"
            " SELECT now() - interval '7 days', now(), now() - interval '8 days', 1, true,"
            " 1 + (i > %s)::int, 0, encode(sha256(('fp-' || i)::bytea), 'hex'), 100, 300"
            " FROM generate_series(1, %s) i",
            [rows, 2 * rows],
        )
        cursor.execute(
            "INSERT INTO sentry_groupedmessage (project_id, logger, level, message, view, status,"
            " times_seen, first_seen, last_seen, type, short_id)"
            " SELECT project_id, '', 40, 'regression', NULL, 0, 1, now(), now(), 1, id"
            " FROM sentry_regressiongroup ORDER BY id"
        )
        cursor.execute(
            "INSERT INTO sentry_grouphash (project_id, hash, group_id)"
            " SELECT rg.project_id, md5(rg.fingerprint), rg.id FROM sentry_regressiongroup rg"
        )
        cursor.execute("ANALYZE")


def held_regressions(rows: int) -> tuple[list[Any], list[Any]]:
    """Two sets of 100 RegressionGroups of project 1: all linked, and 10 orphaned."""
    from django.db import connection

    from regression_tracking.models import GroupHash, RegressionGroup

    step = rows // (2 * HELD)
    ids = list(range(1, rows + 1, step))[: 2 * HELD]
    linked_ids, orphaned_ids = ids[:HELD], ids[HELD:]
    GroupHash.objects.filter(group_id__in=orphaned_ids[:ORPHANED]).delete()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE sentry_grouphash")
    linked = list(RegressionGroup.objects.filter(id__in=linked_ids).order_by("id"))
    orphaned = list(RegressionGroup.objects.filter(id__in=orphaned_ids).order_by("id"))
    return linked, orphaned


def timed(call: Callable[[], object], repeat: int) -> tuple[float, int]:
    """Median seconds of ``repeat`` calls (after one warm-up) and the statements one call issues."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        call()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), len(queries.captured_queries)


def run(options: argparse.Namespace) -> dict[str, Any]:
    from regression_tracking.issues.grouping import regression_issue_key
    from regression_tracking.services import (
        bulk_get_groups_from_fingerprints,
        get_issue_groups_for_regressions,
    )

    fill(options.rows)
    linked, orphaned = held_regressions(options.rows)
    assert sum(g is None for g in get_issue_groups_for_regressions(linked).values()) == 0
    assert sum(g is None for g in get_issue_groups_for_regressions(orphaned).values()) == ORPHANED

    figures: dict[str, Any] = {
        "rows_per_project": options.rows,
        "held": HELD,
        "orphaned": ORPHANED,
    }
    for name, call_for in (
        ("detector_view", lambda rgs: lambda: get_issue_groups_for_regressions(rgs)),
        (
            "bulk_lookup",
            lambda rgs: (
                lambda: bulk_get_groups_from_fingerprints([regression_issue_key(r) for r in rgs])
            ),
        ),
    ):
        linked_s, linked_q = timed(call_for(linked), options.repeat)
        orphaned_s, orphaned_q = timed(call_for(orphaned), options.repeat)
        figures[name] = {
            "all_linked_ms": round(linked_s * 1000, 2),
            "all_linked_statements": linked_q,
            "ten_orphaned_ms": round(orphaned_s * 1000, 2),
            "ten_orphaned_statements": orphaned_q,
            "ratio": round(orphaned_s / linked_s, 2),
        }
    figures["target"] = TARGET
    figures["detector_view_met"] = figures["detector_view"]["ratio"] <= TARGET
    return figures


def page_section(figures: dict[str, Any], command: str) -> str:
    """The figures page's table of this run."""
    lines = [
        machine_line(command),
        "",
        "| call | all linked | 10 orphaned | ratio | target |",
        "|---|---|---|---|---|",
    ]
    for name, label in (
        ("detector_view", "`get_issue_groups_for_regressions`"),
        ("bulk_lookup", "`bulk_get_groups_from_fingerprints`, the same 100 pairs"),
    ):
        step = figures[name]
        met = "met" if step["ratio"] <= figures["target"] else "**not met**"
        lines.append(
            f"| {label} | {step['all_linked_ms']} ms, {step['all_linked_statements']} statement(s)"
            f" | {step['ten_orphaned_ms']} ms, {step['ten_orphaned_statements']} statement(s)"
            f" | {step['ratio']}x | <= {figures['target']}x: {met} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    url = bench_url(options.database_url)
    create_database(options.database_url)
    setup_django(url)
    figures = run(options)
    text = json.dumps(figures, indent=2)
    print(text)
    if options.json:
        with open(options.json, "w", encoding="utf-8") as out:
            out.write(text + "\n")
    if not options.no_page:
        command = command_line(
            "python -m benchmarks.detector_view", None if argv is None else list(argv)
        )
        write_section(options.page, "detector_view", page_section(figures, command))
    return 0 if figures["detector_view_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
