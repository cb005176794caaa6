"""``manage.py cleanup_orphaned_regressions``: parse options, call the cleanup service, report."""

from __future__ import annotations

import json
import signal
import threading
from argparse import ArgumentParser
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from types import FrameType
from typing import Any

from django.core.management.base import CommandError
from django.db import DatabaseError, connections

from regression_tracking.cleanup.backup import BackupRefusedError
from regression_tracking.cleanup.listing import DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT
from regression_tracking.cleanup.projects import unknown_project_ids
from regression_tracking.durations import format_duration
from regression_tracking.environment import ConfigurationError
from regression_tracking.management.list_output import DryRunListing
from regression_tracking.management.options import (
    DURATION_HELP,
    EXIT_USAGE,
    ExactOptionsCommand,
    at_least_one,
    check_database,
    id_cursor,
    id_value,
    integer,
    output_files,
    parse_duration,
    parse_shard,
    seconds,
    usage_error,
)
from regression_tracking.management.progress import ProgressBar
from regression_tracking.management.streams import GuardedOutputCommand
from regression_tracking.models import RegressionType
from regression_tracking.ops import metrics
from regression_tracking.ops.output_files import OutputFileError
from regression_tracking.services import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MIN_AGE,
    MAX_BATCH_SIZE,
    BackupWriteError,
    BackupWriter,
    BatchReport,
    CleanupAction,
    CleanupAlreadyRunning,
    CleanupResult,
    OrphanReason,
    OrphanScope,
    cleanup_orphaned_regressions,
)

# Exit status when another run holds the lock (1 is an error, 2 a usage error).
EXIT_LOCKED = 3

PAST_TENSE = {CleanupAction.DELETE: "deleted", CleanupAction.DEACTIVATE: "deactivated"}


class Command(GuardedOutputCommand, ExactOptionsCommand):
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
            type=parse_duration,
            default=DEFAULT_MIN_AGE,
            metavar="DURATION",
            help="Grace period: leave orphans younger than this (by date_added) alone, since their "
            f"issue may still be on its way. {DURATION_HELP} Default: 24h.",
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
            help=f"Rows per write transaction, 1 to {MAX_BATCH_SIZE}. Default: %(default)s.",
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
            type=parse_duration,
            metavar="DURATION",
            help="Start no new batch after this long; also the longest the detection statement "
            "may run. Same units as --min-age. Default: no limit.",
        )
        parser.add_argument(
            "--sleep",
            type=seconds,
            default=0.0,
            metavar="SECONDS",
            help="Pause between batches to spare a busy database. Default: 0.",
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
            type=at_least_one,
            metavar="N",
            help=f"With --list: list at most N orphans (1 to {MAX_LIST_LIMIT}) and say how many "
            f"were left out. Default: {DEFAULT_LIST_LIMIT}.",
        )
        parser.add_argument(
            "--database",
            default="default",
            help='The database to clean, by its alias in DATABASES. Default: "default".',
        )

    def handle(
        self,
        *,
        dry_run: bool,
        action: str,
        min_age: timedelta,
        projects: list[int] | None,
        regression_type: str | None,
        batch_size: int,
        max_rows: int | None,
        max_runtime: timedelta | None,
        sleep: float,
        start_after_id: int | None,
        backup: str | None,
        shard: tuple[int, int] | None,
        metrics_textfile: str | None,
        output_format: str,
        list_orphans: bool,
        list_limit: int | None,
        database: str,
        verbosity: int,
        **options: Any,
    ) -> None:
        check_database(database)
        if list_orphans and not dry_run:
            raise CommandError(
                "--list needs --dry-run: it lists what a dry run would act on",
                returncode=EXIT_USAGE,
            )
        if list_limit is not None and not list_orphans:
            raise CommandError("--list-limit needs --list", returncode=EXIT_USAGE)
        if list_limit is not None and list_limit > MAX_LIST_LIMIT:
            raise CommandError(
                f"argument --list-limit: must be at most {MAX_LIST_LIMIT}, got {list_limit}",
                returncode=EXIT_USAGE,
            )
        scope = OrphanScope(
            project_ids=tuple(sorted(set(projects))) if projects else None,
            regression_type=RegressionType[regression_type.upper()] if regression_type else None,
            after_id=start_after_id,
            shard=shard,
        )
        # Only looked at: nothing is opened or created before the run holds its lock and has
        # read the database (the backup is opened by its first write, inside the first batch).
        output_files({"--backup": backup, "--metrics-textfile": metrics_textfile})
        if metrics_textfile is not None:
            try:
                metrics.check_textfile_support()
            except ConfigurationError as error:
                raise CommandError(f"--metrics-textfile: {error}") from error
        try:
            if scope.project_ids and (
                missing := unknown_project_ids(scope.project_ids, using=database)
            ):
                raise CommandError(
                    "--project: no project and no regression groups with id "
                    + ", ".join(map(str, missing))
                )
        except DatabaseError as error:
            raise CommandError(f"database error: {error}".strip()) from error
        backup_writer = None
        if backup is not None and not dry_run:
            try:
                backup_writer = BackupWriter(backup)
            except OutputFileError as error:
                raise CommandError(f"--backup: {error}") from error
        if metrics_textfile is not None:
            metrics.reset_process_counts()

        self._batches_run = 0
        self._dry_run = dry_run
        self._progress = ProgressBar(self.stderr)
        self._listing = DryRunListing(limit=list_limit) if list_orphans else None
        report_batch = self._batch_reporter(verbosity, output_format, action, dry_run)
        result: CleanupResult | None = None
        textfile_error = ""
        try:
            with backup_writer or nullcontext(), _stop_on_signals() as stop_requested:
                result = cleanup_orphaned_regressions(
                    action=CleanupAction(action),
                    dry_run=dry_run,
                    min_age=min_age,
                    scope=scope,
                    batch_size=batch_size,
                    max_rows=max_rows,
                    max_runtime=max_runtime,
                    sleep=sleep,
                    backup=backup_writer,
                    using=database,
                    on_batch=report_batch,
                    should_stop=stop_requested.is_set,
                )
        except ValueError as error:
            if not isinstance(error, BackupRefusedError):
                raise usage_error(error) from error
            raise CommandError(
                f"--backup: {error}; nothing was changed{self._batches_hint()}"
            ) from error
        except CleanupAlreadyRunning as error:
            raise CommandError(
                f"another cleanup_orphaned_regressions run is in progress on database "
                f"{database!r} ({error}); nothing was changed",
                returncode=EXIT_LOCKED,
            ) from error
        except DatabaseError as error:
            connection = connections[database]
            if not connection.is_usable():
                connection.close()
            raise CommandError(f"database error: {error}".strip() + self._batches_hint()) from error
        except BackupWriteError as error:
            raise CommandError(
                f"--backup: cannot write to {backup}: {error.strerror}; the batch being written "
                f"was not committed{self._batches_hint()}"
            ) from error
        finally:
            self._progress.close()
            # Only a run that held its lock and read the database reports: a refused run (exit
            # 3), a run that could not connect or was given bad input leaves the file as it was.
            if metrics_textfile is not None and (result is not None or self._batches_run):
                textfile_error = self._write_textfile(metrics_textfile, failed=result is None)
        if textfile_error:
            raise CommandError(textfile_error)
        assert result is not None

        summary = result.as_dict()
        if self._listing is not None:
            summary.update(
                self._listing.write(
                    self.stdout,
                    result,
                    verb=f"would be {PAST_TENSE[result.action]}",
                    min_age=min_age,
                    output_format=output_format,
                    verbosity=verbosity,
                    using=database,
                )
            )
        if output_format == "json":
            self.stdout.write(json.dumps(summary))
        elif verbosity >= 1:
            self.stdout.write(format_summary(result, min_age))

    def _write_textfile(self, path: str, *, failed: bool) -> str:
        """Write the textfile; what went wrong, if anything (printed at once if the run failed)."""
        try:
            metrics.write_textfile(path)
        except (OutputFileError, OSError) as error:
            problem = getattr(error, "problem", None) or getattr(error, "strerror", None)
            message = f"--metrics-textfile: cannot write to {path}: {problem}"
            if failed:
                self.stderr.write(message)
            return message
        return ""

    def _batches_hint(self) -> str:
        """Said only when batches committed: they stay done, and a rerun picks up the rest."""
        if not self._batches_run or self._dry_run:
            return ""
        return " (finished batches stay done; rerun to finish the job)"

    def _batch_reporter(
        self, verbosity: int, output_format: str, action: str, dry_run: bool
    ) -> Callable[[BatchReport], None]:
        verb = PAST_TENSE[CleanupAction(action)]
        if dry_run:
            verb = f"would be {verb}"
        show_progress = output_format == "text" and verbosity >= 1 and self.stderr.isatty()

        def report(batch: BatchReport) -> None:
            self._batches_run += 1
            if self._listing is not None:
                self._listing.add(batch)
            if verbosity >= 2 and output_format == "text":
                if batch.skipped:
                    outcome = "skipped: rows locked by another transaction"
                else:
                    outcome = f"{len(batch.acted_ids)} {verb}"
                self.stdout.write(
                    f"batch {batch.number}: ids {batch.first_id}..{batch.last_id} "
                    f"({batch.size} candidates), {outcome}"
                )
                if verbosity >= 3:
                    for regression_id in batch.acted_ids:
                        self.stdout.write(f"  {verb} regression group {regression_id}")
            if show_progress:
                self._progress.update(done=batch.done, total=batch.eligible, batch=batch.number)

        return report


def format_summary(result: CleanupResult, min_age: timedelta) -> str:
    """The text summary: one ``name: value`` line per figure."""
    by_reason = ", ".join(f"{reason} {result.by_reason[reason]}" for reason in OrphanReason)
    verb = PAST_TENSE[result.action]
    if result.dry_run:
        acted_line = f"would be {verb}: {result.would_act} (dry run: nothing was changed)"
    else:
        acted_line = f"{verb}: {result.acted}"
    lines = [
        f"scanned: {result.scanned}",
        f"orphaned: {result.orphaned} ({by_reason})",
        f"too recent: {result.too_recent} (younger than {format_duration(min_age)})",
        f"eligible: {result.eligible}",
        acted_line,
    ]
    if result.skipped:
        lines.append(f"skipped: {result.skipped} (rows locked by another transaction)")
    if result.changed_meanwhile:
        lines.append(
            f"changed meanwhile: {result.changed_meanwhile} "
            "(an issue appeared, or the row changed, before its batch)"
        )
    if result.not_reached:
        lines.append(f"not reached: {result.not_reached} (the run stopped first)")
    last_id = "-" if result.last_id is None else str(result.last_id)
    lines += [
        f"batches: {result.batches}",
        f"last id: {last_id}",
        f"stop reason: {result.stop_reason}",
        f"elapsed: {result.elapsed_seconds:.2f}s",
    ]
    return "\n".join(lines)


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM, so the cleanup stops after the current batch."""
    stop_requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop_requested
        return

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop_requested
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
