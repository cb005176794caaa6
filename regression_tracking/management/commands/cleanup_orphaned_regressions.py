"""``manage.py cleanup_orphaned_regressions``: parse options, call the cleanup service, report.

The checks before the run and the translation of its errors are in ``management/cleanup_run.py``,
what it prints in ``management/cleanup_report.py``, the service in ``cleanup/run.py``.
"""

from __future__ import annotations

import time
from argparse import ArgumentParser
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from django.core.management.base import CommandError

from regression_tracking.cleanup.listing import DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT
from regression_tracking.durations import DURATION_HELP, format_duration
from regression_tracking.management.cleanup_report import CleanupReporter
from regression_tracking.management.cleanup_run import (
    build_request,
    prepare,
    run_errors,
    stop_on_signals,
    write_textfile,
)
from regression_tracking.management.options import (
    ExactOptionsCommand,
    check_database,
    duration,
    id_cursor,
    id_value,
    integer,
    parse_shard,
    seconds,
    whole_number,
)
from regression_tracking.management.streams import GuardedOutputCommand
from regression_tracking.models import RegressionType
from regression_tracking.services import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BATCH_TIME_SECONDS,
    GRACE_PERIOD,
    MAX_BATCH_SIZE,
    MAX_BATCH_TIME_SECONDS,
    CleanupAction,
    CleanupResult,
    run_cleanup,
)


class Command(GuardedOutputCommand, ExactOptionsCommand):
    # The run's time, as the service takes it; tests put a fake clock here.
    clock: Callable[[], float] = staticmethod(time.monotonic)
    pause: Callable[[float], None] = staticmethod(time.sleep)
    help = (
        "Delete or deactivate RegressionGroups whose issue is missing (no GroupHash with a live "
        "group for their project and md5(fingerprint)), once they are older than a grace period."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Run every step but the writes and report exactly what would be done.",
        )
        parser.add_argument(
            "--action",
            choices=[a.value for a in CleanupAction],
            default=CleanupAction.DELETE.value,
            help="delete: remove the orphans. deactivate: set active=false and date_resolved=now "
            "on active orphans, keeping them as history. Either unblocks new regression issues. "
            "Default: %(default)s.",
        )
        parser.add_argument(
            "--min-age",
            type=duration,
            default=GRACE_PERIOD,
            metavar="DURATION",
            help="Grace period: leave orphans younger than this (by date_added) alone, since their "
            f"issue may still be on its way. {DURATION_HELP} "
            f"Default: {format_duration(GRACE_PERIOD)}.",
        )
        parser.add_argument(
            "--project",
            type=id_value,
            action="append",
            dest="projects",
            metavar="ID",
            help="Only this project's regression groups; repeat for several. Default: all.",
        )
        parser.add_argument(
            "--type",
            choices=[t.name.lower() for t in RegressionType],
            dest="regression_type",
            help="Only endpoint or only function regressions. Default: both.",
        )
        parser.add_argument(
            "--batch-size",
            type=integer,
            default=DEFAULT_BATCH_SIZE,
            metavar="N",
            help=f"Rows in the first write transaction, 1 to {MAX_BATCH_SIZE}; later batches "
            "adapt to --batch-time (with --batch-time 0, every batch holds N rows). "
            "Default: %(default)s.",
        )
        parser.add_argument(
            "--batch-time",
            type=seconds,
            default=DEFAULT_BATCH_TIME_SECONDS,
            metavar="SECONDS",
            help="How long each write transaction should take: after each batch the next one's "
            "size is chosen from its rate, at most twice the one before, within 1 and "
            f"{MAX_BATCH_SIZE} rows. 0 keeps --batch-size fixed; a dry run, with nothing to "
            f"time, keeps it too. 0 to {MAX_BATCH_TIME_SECONDS:g}. Default: %(default)s.",
        )
        parser.add_argument(
            "--max-rows",
            type=integer,
            metavar="N",
            help="Stop after acting on N rows (resume later with --start-after-id or a plain "
            "rerun). Default: no limit.",
        )
        parser.add_argument(
            "--max-runtime",
            type=duration,
            metavar="DURATION",
            help="Start no new batch after this long; also the longest the detection statement "
            "may run. A statement still running 2s past it is cancelled, and its connection "
            "dropped if the database does not answer (exit 1). Same units as --min-age. "
            "Default: no limit.",
        )
        parser.add_argument(
            "--sleep",
            type=seconds,
            default=0.0,
            metavar="SECONDS",
            help="Pause between batches to spare a busy database. Default: 0.",
        )
        parser.add_argument(
            "--max-replication-lag",
            type=duration,
            metavar="DURATION",
            help="Before each batch, wait while any physical standby streaming from this "
            "PostgreSQL server (the primary) is further behind than this, 1s or more (its replay "
            "lag, from pg_stat_replication; the role needs pg_monitor or superuser, checked "
            "before any write). Waits count toward "
            "--max-runtime; one that outlasts it ends the run with stop reason replication_lag. "
            "Each wait is shown at -v 2. Same units as --min-age. Default: no check.",
        )
        parser.add_argument(
            "--start-after-id",
            type=id_cursor,
            metavar="ID",
            help="Resume: only regression groups with an id greater than ID (the 'last id' a "
            "stopped run printed).",
        )
        parser.add_argument(
            "--backup",
            metavar="PATH",
            help="Append every row about to be deleted or deactivated, all columns, as one JSON "
            "line, flushed to disk before its batch commits; opened by the first batch, never "
            "before. A file that is not a backup, or not a regular file, is refused; a cut last "
            "line is moved to PATH.cut-<time>. Restore with restore_regression_groups PATH.",
        )
        parser.add_argument(
            "--shard",
            type=parse_shard,
            metavar="K/N",
            help="Only projects whose id modulo N is K, so N runs (processes or machines) clean "
            "one database in parallel without overlapping; each shard has its own lock, and a "
            "shard of another N is refused (exit 3) while shards of one N run. "
            "Default: every project.",
        )
        parser.add_argument(
            "--metrics-textfile",
            metavar="PATH",
            help="After the run, write its counters to PATH in the Prometheus node_exporter "
            "textfile format, atomically beside PATH (never over a FIFO or device; not written "
            "by a refused run). Must differ from --backup. Needs the prometheus extra.",
        )
        parser.add_argument(
            "--format",
            choices=["text", "json"],
            default="text",
            dest="output_format",
            help="text: a summary for people. json: one JSON object (printed at every "
            "verbosity). Default: %(default)s.",
        )
        parser.add_argument(
            "--list",
            action="store_true",
            dest="list_orphans",
            help="With --dry-run: also list each orphan the dry run would act on (id, project id "
            "and slug, type, fingerprint, reason, age, active), in id order: an aligned table, or "
            "with --format json one JSON object a line before the summary's. Printed at every "
            "verbosity.",
        )
        parser.add_argument(
            "--list-limit",
            type=whole_number(1, MAX_LIST_LIMIT),
            metavar="N",
            help=f"With --list: list at most N orphans (1 to {MAX_LIST_LIMIT}) and say how many "
            f"were left out. Default: {DEFAULT_LIST_LIMIT}.",
        )
        parser.add_argument(
            "--database",
            default="default",
            help='The database to clean, by its alias in DATABASES. Default: "default".',
        )

    def handle(self, **options: Any) -> None:
        check_database(options["database"])
        request = build_request(options)
        prepared = prepare(request, options)
        reporter = CleanupReporter(
            self.stdout,
            self.stderr,
            request,
            verbosity=options["verbosity"],
            output_format=options["output_format"],
            listing=prepared.listing,
        )
        result: CleanupResult | None = None
        try:
            with (
                run_errors(request, backup=options["backup"], reporter=reporter),
                prepared.backup or nullcontext(),
                stop_on_signals() as stop_requested,
            ):
                result = run_cleanup(
                    request,
                    backup=prepared.backup,
                    on_batch=reporter.batch,
                    on_lag_wait=reporter.lag_wait,
                    should_stop=stop_requested.is_set,
                    clock=self.clock,
                    pause=self.pause,
                )
        finally:
            reporter.close()
            textfile_error = write_textfile(
                options["metrics_textfile"],
                result,
                batches_run=reporter.batches_run,
                stderr=self.stderr,
            )
        if textfile_error:
            raise CommandError(textfile_error)
        assert result is not None
        reporter.summary(result)
