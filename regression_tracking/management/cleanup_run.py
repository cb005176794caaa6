"""``cleanup_orphaned_regressions`` around the service: the checks before the run, the signals
that stop it, and the one translation of what the run raises into a one-line error and exit code.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.core.management.base import CommandError, OutputWrapper
from django.db import DatabaseError, connections

from regression_tracking.cleanup.projects import unknown_project_ids
from regression_tracking.environment import ConfigurationError
from regression_tracking.management.cleanup_report import CleanupReporter
from regression_tracking.management.list_output import DryRunListing
from regression_tracking.management.options import EXIT_USAGE, output_files, usage_error
from regression_tracking.models import RegressionType
from regression_tracking.ops import metrics
from regression_tracking.ops.output_files import OutputFileError
from regression_tracking.services import (
    BackupRefusedError,
    BackupWriteError,
    BackupWriter,
    CleanupAction,
    CleanupAlreadyRunning,
    CleanupArgumentError,
    CleanupRequest,
    CleanupResult,
    ConnectionDropped,
    OrphanScope,
    StandbyLagUnreadable,
)

# Exit status when another run holds the lock (1 is an error, 2 a usage error).
EXIT_LOCKED = 3


# The options that go into the CleanupRequest as they are parsed.
REQUEST_OPTIONS = (
    "dry_run",
    "min_age",
    "batch_size",
    "batch_time",
    "max_rows",
    "max_runtime",
    "sleep",
    "max_replication_lag",
)


def build_request(options: Mapping[str, Any]) -> CleanupRequest:
    """The command's parsed options as the one request the service runs."""
    projects, regression_type = options["projects"], options["regression_type"]
    scope = OrphanScope(
        project_ids=tuple(sorted(set(projects))) if projects else None,
        regression_type=RegressionType[regression_type.upper()] if regression_type else None,
        after_id=options["start_after_id"],
        shard=options["shard"],
    )
    return CleanupRequest(
        action=CleanupAction(options["action"]),
        scope=scope,
        using=options["database"],
        **{name: options[name] for name in REQUEST_OPTIONS},
    )


@dataclass(frozen=True, slots=True)
class PreparedRun:
    # Opened by the first batch's write, never before (None: no --backup, or a dry run).
    backup: BackupWriter | None
    # --list: the ids the dry run's batches would act on.
    listing: DryRunListing | None


def prepare(request: CleanupRequest, options: Mapping[str, Any]) -> PreparedRun:
    """Every check that needs no lock, before the run: raises ``CommandError``, changes nothing.

    Output files are only looked at: nothing is opened or created before the run holds its lock
    and has read the database.
    """
    backup, metrics_textfile = options["backup"], options["metrics_textfile"]
    list_orphans, list_limit = options["list_orphans"], options["list_limit"]
    refuse_bad_list_options(
        dry_run=request.dry_run, list_orphans=list_orphans, list_limit=list_limit
    )
    output_files({"--backup": backup, "--metrics-textfile": metrics_textfile})
    if metrics_textfile is not None:
        try:
            metrics.check_textfile_support()
        except ConfigurationError as error:
            raise CommandError(f"--metrics-textfile: {error}") from error
    project_ids = request.scope.project_ids
    try:
        if project_ids and (missing := unknown_project_ids(project_ids, using=request.using)):
            raise CommandError(
                "--project: no project and no regression groups with id "
                + ", ".join(map(str, missing))
            )
    except DatabaseError as error:
        raise CommandError(f"database error: {error}".strip()) from error
    writer = None
    if backup is not None and not request.dry_run:
        try:
            writer = BackupWriter(backup)
        except OutputFileError as error:
            raise CommandError(f"--backup: {error}") from error
    if metrics_textfile is not None:
        metrics.reset_process_counts()
    return PreparedRun(
        backup=writer, listing=DryRunListing(limit=list_limit) if list_orphans else None
    )


@contextmanager
def run_errors(
    request: CleanupRequest, *, backup: str | None, reporter: CleanupReporter
) -> Iterator[None]:
    """What the run raises, as the command's one-line errors (exit 1, 2 or 3).

    ``reporter`` says whether finished batches stay done, and prints the summary of a run cut
    short by a silent database. Anything else (a bug) propagates with its traceback.
    """
    batches_hint = reporter.batches_hint
    try:
        yield
    except ConnectionDropped as error:
        connections[request.using].close()
        reporter.close()
        reporter.summary(error.result)
        raise CommandError(f"{error}{batches_hint()}") from error
    except CleanupArgumentError as error:
        raise usage_error(error) from error
    except StandbyLagUnreadable as error:
        raise CommandError(f"--max-replication-lag: {error}; nothing was changed") from error
    except BackupRefusedError as error:
        raise CommandError(f"--backup: {error}; nothing was changed{batches_hint()}") from error
    except CleanupAlreadyRunning as error:
        raise CommandError(
            f"another cleanup_orphaned_regressions run is in progress on database "
            f"{request.using!r} ({error}); nothing was changed",
            returncode=EXIT_LOCKED,
        ) from error
    except DatabaseError as error:
        connection = connections[request.using]
        if not connection.is_usable():
            connection.close()
        raise CommandError(f"database error: {error}".strip() + batches_hint()) from error
    except BackupWriteError as error:
        raise CommandError(
            f"--backup: cannot write to {backup}: {error.strerror}; the batch being written "
            f"was not committed{batches_hint()}"
        ) from error


def refuse_bad_list_options(*, dry_run: bool, list_orphans: bool, list_limit: int | None) -> None:
    if list_orphans and not dry_run:
        raise CommandError(
            "--list needs --dry-run: it lists what a dry run would act on",
            returncode=EXIT_USAGE,
        )
    if list_limit is not None and not list_orphans:
        raise CommandError("--list-limit needs --list", returncode=EXIT_USAGE)


def write_textfile(
    path: str | None, result: CleanupResult | None, *, batches_run: int, stderr: OutputWrapper
) -> str:
    """Write ``--metrics-textfile`` after the run; what went wrong, if anything (printed at once
    when the run itself failed, since its own error is what the command then raises).

    Only a run that held its lock and read the database reports: a refused run (exit 3), a run
    that could not connect or was given bad input leaves the file as it was.
    """
    if path is None or (result is None and not batches_run):
        return ""
    try:
        metrics.write_textfile(path)
    except (OutputFileError, OSError) as error:
        problem = getattr(error, "problem", None) or getattr(error, "strerror", None)
        message = f"--metrics-textfile: cannot write to {path}: {problem}"
        if result is None:
            stderr.write(message)
        return message
    return ""


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM, so the cleanup stops after the current batch."""
    stop_requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop_requested
        return

    def request_stop(signum: int, frame: object) -> None:
        stop_requested.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop_requested
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
