"""Cleanup of orphaned RegressionGroups: find them in one statement, act in short batches.

The candidates come from ``detect_orphans`` (one pass over the table, under a lock timeout and a
statement timeout, cancelled when the run is asked to stop). The writes go in batches of
candidate ids in id order, one transaction each, and each batch decides the orphan rule again
after its rows are locked (the race rule, ``batches``): a GroupHash committed before the check
saves its row. A crash loses at most the uncommitted batch; rerunning finishes the job.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.utils import timezone

from regression_tracking.cleanup.backup import BackupWriter
from regression_tracking.cleanup.batches import BatchWrite, run_batch
from regression_tracking.cleanup.client_bound import (
    CANCEL_AFTER_SECONDS,
    DROP_AFTER_SECONDS,
    ClientBound,
)
from regression_tracking.cleanup.detection import Detection, OrphanScope, detect_orphans
from regression_tracking.cleanup.locking import (
    MAX_SHARDS,
    QUERY_CANCELED,
    StatementCancelled,
    StatementTimedOut,
    advisory_lock,
    bounded_statements,
    sqlstate,
)
from regression_tracking.cleanup.replication import StandbyLag, StandbyWatch
from regression_tracking.cleanup.sizing import MAX_BATCH_SIZE, BatchSizer
from regression_tracking.durations import format_duration
from regression_tracking.ops import metrics
from regression_tracking.orphans import GRACE_PERIOD, OrphanReason

# The logger keeps the name operators route in their logging configuration.
logger = logging.getLogger("regression_tracking.services.cleanup")


# Detection's statement timeout when the run has no --max-runtime (with one: the time left).
DETECTION_STATEMENT_TIMEOUT = timedelta(minutes=30)
# How long detection waits for a lock on the tables it reads (a queued ALTER TABLE, VACUUM FULL)
# before it fails naming what holds them; never longer than 80% of the run's max_runtime.
DETECTION_LOCK_TIMEOUT = timedelta(seconds=30)
DEFAULT_BATCH_SIZE = 1000
# How long each write transaction should take; batch sizes adapt to it (0: they stay fixed).
DEFAULT_BATCH_TIME_SECONDS = 0.5
# The longest time target: a batch's statement is cancelled after its statement timeout.
MAX_BATCH_TIME_SECONDS = 60.0
# Sleeps between batches are cut in slices this long, so an interrupt is seen promptly.
SLEEP_SLICE_SECONDS = 0.1
# While a standby is too far behind, its lag is read again this often, and the wait is told
# again this often (a run without max_runtime may wait for hours).
LAG_POLL_SECONDS = 1.0
LAG_REPORT_SECONDS = 30.0

DETECTED_METRIC = "regression_tracking.orphans.detected"
DELETED_METRIC = "regression_tracking.orphans.deleted"
DEACTIVATED_METRIC = "regression_tracking.orphans.deactivated"
LAG_WAITS_METRIC = "regression_tracking.cleanup.replication_lag_waits"
LAG_WAITED_MS_METRIC = "regression_tracking.cleanup.replication_lag_waited_ms"


class CleanupAction(enum.StrEnum):
    # Remove the row.
    DELETE = "delete"
    # Keep the row as history: active = false, date_resolved = now (active orphans only).
    DEACTIVATE = "deactivate"


class StopReason(enum.StrEnum):
    DONE = "done"
    MAX_ROWS = "max_rows"
    MAX_RUNTIME = "max_runtime"
    # max_runtime ran out while the run waited for a standby to catch up.
    REPLICATION_LAG = "replication_lag"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True, slots=True)
class BatchReport:
    number: int
    # Candidate ids the batch covered (the first and last, in id order) and how many.
    first_id: int
    last_id: int
    size: int
    # Ids of the rows changed (in a dry run: that would be), in id order.
    acted_ids: tuple[int, ...]
    # The rows were locked by another transaction through every attempt: nothing was done.
    skipped: bool
    # Totals so far, for progress.
    done: int
    eligible: int


@dataclass(frozen=True, slots=True)
class LagWait:
    """The run waits for standbys (``ended`` False: when it begins, then every
    ``LAG_REPORT_SECONDS``), or goes on or stops (``ended`` True)."""

    # The standbys further behind than max_replication_lag, as last read (none once caught up).
    behind: tuple[StandbyLag, ...]
    # How long this wait has lasted (0 when it begins).
    waited_seconds: float
    ended: bool
    # Set when the wait ended the run (out of time, or asked to stop).
    stop_reason: StopReason | None = None
    # Standbys that disconnected (or stopped) while the run waited for them: no longer waited for.
    vanished: tuple[str, ...] = ()


@dataclass(slots=True)
class CleanupResult:
    dry_run: bool
    action: CleanupAction
    # Rows examined in scope, orphaned or not.
    scanned: int = 0
    # Orphans of any age, split by reason in by_reason.
    orphaned: int = 0
    by_reason: dict[str, int] = field(
        default_factory=lambda: {reason.value: 0 for reason in OrphanReason}
    )
    # Orphans inside the grace period: never acted on.
    too_recent: int = 0
    # What the action applies to: old enough and, for deactivate, active.
    eligible: int = 0
    # Rows changed; 0 in a dry run.
    acted: int = 0
    # In a dry run, the rows the batches would have changed.
    would_act: int = 0
    # Eligible rows left alone because another transaction kept them locked, or because issues
    # kept appearing among their batch's rows while it wrote (a rerun takes them up again).
    skipped: int = 0
    # Eligible rows whose batch ran but did not change them: by the time their rows were locked
    # an issue had appeared, or the row had been changed or removed by someone else.
    changed_meanwhile: int = 0
    # Eligible rows no batch reached (the run stopped first). Every eligible row is counted once:
    # acted (or would_act) + skipped + changed_meanwhile + not_reached = eligible.
    not_reached: int = 0
    batches: int = 0
    # The batch sizes chosen (the smallest, the largest, the last; the last batch may hold fewer
    # rows); None when no batch ran.
    batch_sizes: dict[str, int] | None = None
    # The last candidate id the run got through: rerun with start_after_id = last_id to resume.
    last_id: int | None = None
    # With max_replication_lag: the most standbys seen streaming (None without it), how many
    # times the run waited for them before a batch, and how long in all.
    standbys: int | None = None
    replication_lag_waits: int = 0
    replication_lag_wait_seconds: float = 0.0
    stop_reason: StopReason = StopReason.DONE
    elapsed_seconds: float = 0.0
    # The run's clock reading and "old enough" (now - min_age): set once when the run starts, for
    # everything the run decides (detection, every batch's write, the dry run's listing). Not in
    # as_dict: the summary's figures are the counts.
    now: datetime | None = None
    cutoff: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["now"], data["cutoff"]
        data["action"] = str(self.action)
        data["stop_reason"] = str(self.stop_reason)
        data["elapsed_seconds"] = round(self.elapsed_seconds, 3)
        data["replication_lag_wait_seconds"] = round(self.replication_lag_wait_seconds, 3)
        return data


class ConnectionDropped(Exception):
    """The run was asked to stop, the database did not answer, and the connection was dropped.

    ``result`` holds what was done until then; the batch in flight was rolled back, unless its
    COMMIT had reached the server before it stopped answering.
    """

    def __init__(self, result: CleanupResult) -> None:
        super().__init__(
            f"the database did not answer within "
            f"{CANCEL_AFTER_SECONDS + DROP_AFTER_SECONDS:g}s of the stop ({result.stop_reason}): "
            "its statement was cancelled and the connection dropped; the batch in flight was "
            "not committed, unless its commit reached the server first"
        )
        self.result = result


class CleanupArgumentError(ValueError):
    """A cleanup argument out of its range: ``parameter`` names it, ``problem`` says why.

    The text is ``"<parameter> <problem>"`` (``"batch_size must be between 1 and 10000, got 0"``);
    the command shows it as a usage error of the option that sets the parameter.
    """

    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(f"{parameter} {problem}")
        self.parameter = parameter
        self.problem = problem


@dataclass(frozen=True, slots=True)
class CleanupRequest:
    """What one cleanup run is asked to do; ``run_cleanup`` checks it before any work."""

    action: CleanupAction = CleanupAction.DELETE
    dry_run: bool = False
    # The grace period: orphans younger than this (by date_added) are left alone.
    min_age: timedelta = GRACE_PERIOD
    scope: OrphanScope = field(default_factory=OrphanScope)
    # The first batch's size; later ones adapt to batch_time (with batch_time 0 they keep it).
    batch_size: int = DEFAULT_BATCH_SIZE
    batch_time: float = DEFAULT_BATCH_TIME_SECONDS
    max_rows: int | None = None
    max_runtime: timedelta | None = None
    sleep: float = 0.0
    # Before each batch, wait while a standby's replay lag is above this (PostgreSQL only).
    max_replication_lag: timedelta | None = None
    using: str = DEFAULT_DB_ALIAS

    def __post_init__(self) -> None:
        # "delete" as well as CleanupAction.DELETE, so the action compares by identity.
        object.__setattr__(self, "action", CleanupAction(self.action))


def _validate(request: CleanupRequest) -> None:
    if request.min_age < timedelta(0):
        raise CleanupArgumentError(
            "min_age", f"must not be negative, got {format_duration(request.min_age)}"
        )
    if not 1 <= request.batch_size <= MAX_BATCH_SIZE:
        raise CleanupArgumentError(
            "batch_size", f"must be between 1 and {MAX_BATCH_SIZE}, got {request.batch_size}"
        )
    if not 0 <= request.batch_time <= MAX_BATCH_TIME_SECONDS:
        raise CleanupArgumentError(
            "batch_time",
            f"must be between 0 and {MAX_BATCH_TIME_SECONDS:g} seconds, got {request.batch_time}",
        )
    if request.max_rows is not None and request.max_rows < 1:
        raise CleanupArgumentError("max_rows", f"must be at least 1, got {request.max_rows}")
    if request.max_runtime is not None and request.max_runtime <= timedelta(0):
        raise CleanupArgumentError(
            "max_runtime", f"must be positive, got {format_duration(request.max_runtime)}"
        )
    if request.sleep < 0:
        raise CleanupArgumentError("sleep", f"must not be negative, got {request.sleep}")
    lag = request.max_replication_lag
    if lag is not None and lag <= timedelta(0):
        raise CleanupArgumentError(
            "max_replication_lag", f"must be positive, got {format_duration(lag)}"
        )
    if lag is not None and connections[request.using].vendor != "postgresql":
        raise CleanupArgumentError(
            "max_replication_lag",
            f"needs PostgreSQL (its standbys' replay lag); database {request.using!r} is "
            f"{connections[request.using].display_name}",
        )
    shard = request.scope.shard
    if shard is not None and not (1 <= shard[1] <= MAX_SHARDS and 0 <= shard[0] < shard[1]):
        raise CleanupArgumentError(
            "shard", f"must be k/n with 0 <= k < n <= {MAX_SHARDS}, got {shard}"
        )


def _never_stop() -> bool:
    return False


def cleanup_orphaned_regressions(
    *,
    backup: BackupWriter | None = None,
    on_batch: Callable[[BatchReport], None] | None = None,
    on_lag_wait: Callable[[LagWait], None] | None = None,
    should_stop: Callable[[], bool] = _never_stop,
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
    scope: OrphanScope | None = None,
    **request: Any,
) -> CleanupResult:
    """``run_cleanup`` with the request's fields as keyword arguments (``using`` among them)."""
    return run_cleanup(
        CleanupRequest(scope=scope or OrphanScope(), **request),
        backup=backup,
        on_batch=on_batch,
        on_lag_wait=on_lag_wait,
        should_stop=should_stop,
        clock=clock,
        pause=pause,
    )


def run_cleanup(
    request: CleanupRequest,
    *,
    backup: BackupWriter | None = None,
    on_batch: Callable[[BatchReport], None] | None = None,
    on_lag_wait: Callable[[LagWait], None] | None = None,
    should_stop: Callable[[], bool] = _never_stop,
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
) -> CleanupResult:
    """Delete or deactivate the orphans older than ``request.min_age`` in scope, in batches.

    A dry run takes the same path through the batches (caps, interrupts, reports) minus the
    writes: each batch would act on its eligible ids as the detection statement found them.
    ``should_stop`` is asked between batches (a signal handler sets it): the current batch always
    finishes; during detection it cancels the statement. With ``max_replication_lag``, each batch
    first waits while a standby is further behind (``on_lag_wait`` is told when a wait begins and
    ends). ``clock`` and ``pause`` are the run's time (``time.monotonic``, ``time.sleep``).

    Raises ``CleanupArgumentError`` for a bad request (nothing done), ``DetectionLockTimeout``
    (naming what holds the table) when detection waits too long for a table lock,
    ``CleanupAlreadyRunning`` when another run holds the lock (PostgreSQL),
    ``StandbyLagUnreadable`` (before any write) when the role cannot read the standbys' lag,
    ``ConnectionDropped`` when the run was asked to stop and the database stopped answering, and
    database errors as they come; finished batches stay done.
    """
    _validate(request)
    scope, using = request.scope, request.using
    action = request.action
    started = clock()
    now = timezone.now()
    cutoff = now - request.min_age
    result = CleanupResult(dry_run=request.dry_run, action=action, now=now, cutoff=cutoff)
    _log_started(request)
    deadline = started + request.max_runtime.total_seconds() if request.max_runtime else None
    bound = ClientBound(using, should_stop=should_stop, deadline=deadline, clock=clock)
    try:
        with bound, advisory_lock(using, scope.shard):
            watch = _watch_standbys(request, result, clock)
            detection = _detect(request, cutoff, should_stop)
            if isinstance(detection, StopReason):
                result.stop_reason = detection
            else:
                _record_detection(result, detection)
                _run_batches(
                    result,
                    detection.eligible_ids,
                    request,
                    deadline=deadline,
                    backup=backup,
                    on_batch=on_batch,
                    watch=watch,
                    on_lag_wait=on_lag_wait,
                    should_stop=should_stop,
                    clock=clock,
                    pause=pause,
                )
    except DatabaseError as error:
        # The client-side bound ended a statement the run was waiting on (see client_bound.py).
        if not bound.cancelled or bound.reason is None:
            raise
        result.stop_reason = StopReason(bound.reason)
        if bound.dropped:
            result.elapsed_seconds = clock() - started
            raise ConnectionDropped(result) from error
        if sqlstate(error) != QUERY_CANCELED:
            raise

    if not request.dry_run and result.acted:
        metric = DELETED_METRIC if action is CleanupAction.DELETE else DEACTIVATED_METRIC
        metrics.incr(metric, amount=result.acted)
    result.elapsed_seconds = clock() - started
    logger.info("regression_tracking.cleanup.completed", extra=result.as_dict())
    return result


def _record_detection(result: CleanupResult, detection: Detection) -> None:
    result.scanned = detection.scanned
    result.orphaned = detection.orphaned
    result.by_reason.update({str(r): count for r, count in detection.by_reason.items()})
    result.too_recent = detection.too_recent
    result.eligible = len(detection.eligible_ids)
    for reason, count in sorted(detection.by_reason.items()):
        if count:
            metrics.incr(DETECTED_METRIC, amount=count, tags={"reason": str(reason)})


def _log_started(request: CleanupRequest) -> None:
    scope = request.scope
    logger.info(
        "regression_tracking.cleanup.started",
        extra={
            "action": str(request.action),
            "dry_run": request.dry_run,
            "min_age_seconds": request.min_age.total_seconds(),
            "project_ids": list(scope.project_ids) if scope.project_ids is not None else None,
            "regression_type": scope.regression_type,
            "start_after_id": scope.after_id,
            "shard": "/".join(map(str, scope.shard)) if scope.shard else None,
            "batch_size": request.batch_size,
            "batch_time_seconds": request.batch_time,
            "max_rows": request.max_rows,
            "max_replication_lag_seconds": (
                request.max_replication_lag.total_seconds()
                if request.max_replication_lag is not None
                else None
            ),
        },
    )


def _watch_standbys(
    request: CleanupRequest, result: CleanupResult, clock: Callable[[], float]
) -> StandbyWatch | None:
    """With max_replication_lag: check the role may read the standbys' lag, and count them."""
    if request.max_replication_lag is None:
        return None
    watch = StandbyWatch(request.using, clock=clock)
    watch.check_readable()
    watch.read()
    result.standbys = watch.most_seen
    return watch


def _detect(
    request: CleanupRequest, cutoff: datetime, should_stop: Callable[[], bool]
) -> Detection | StopReason:
    """Detection under its bounds, or why it ended early (interrupted, out of time)."""
    statement_timeout = DETECTION_STATEMENT_TIMEOUT
    if request.max_runtime is not None:
        statement_timeout = min(statement_timeout, request.max_runtime)
    try:
        with bounded_statements(
            request.using,
            # Below the statement timeout, so a wait on a table lock ends as the error that
            # names its holder rather than as a timeout.
            lock_timeout=min(DETECTION_LOCK_TIMEOUT, statement_timeout * 0.8),
            statement_timeout=statement_timeout,
            should_stop=should_stop,
        ):
            return detect_orphans(
                cutoff=cutoff,
                scope=request.scope,
                active_only=request.action is CleanupAction.DEACTIVATE,
                using=request.using,
            )
    except StatementCancelled:
        return StopReason.INTERRUPTED
    except StatementTimedOut:
        return StopReason.MAX_RUNTIME


def _run_batches(
    result: CleanupResult,
    eligible: Sequence[int],
    request: CleanupRequest,
    *,
    deadline: float | None,
    backup: BackupWriter | None,
    on_batch: Callable[[BatchReport], None] | None,
    watch: StandbyWatch | None,
    on_lag_wait: Callable[[LagWait], None] | None,
    should_stop: Callable[[], bool],
    clock: Callable[[], float],
    pause: Callable[[float], None],
) -> None:
    assert result.cutoff is not None
    assert result.now is not None
    write = BatchWrite(
        deactivate=result.action is CleanupAction.DEACTIVATE,
        cutoff=result.cutoff,
        now=result.now,
        using=request.using,
    )
    max_rows, sleep = request.max_rows, request.sleep
    # A dry run writes nothing: with no transaction to time, its batches keep --batch-size.
    sizer = BatchSizer(
        first=request.batch_size, target_seconds=0.0 if result.dry_run else request.batch_time
    )
    position = 0
    while True:
        changed = result.would_act if result.dry_run else result.acted
        result.not_reached = len(eligible) - position
        if position >= len(eligible):
            result.stop_reason = StopReason.DONE
            return
        if max_rows is not None and changed >= max_rows:
            result.stop_reason = StopReason.MAX_ROWS
            return
        if deadline is not None and clock() >= deadline:
            result.stop_reason = StopReason.MAX_RUNTIME
            return
        if should_stop():
            result.stop_reason = StopReason.INTERRUPTED
            return
        if watch is not None:
            assert request.max_replication_lag is not None
            stopped = _wait_for_standbys(
                result,
                watch,
                request.max_replication_lag.total_seconds(),
                deadline=deadline,
                on_lag_wait=on_lag_wait,
                should_stop=should_stop,
                clock=clock,
                pause=pause,
            )
            if stopped is not None:
                result.stop_reason = stopped
                return

        size = sizer.start_batch()
        result.batch_sizes = sizer.used()
        if max_rows is not None:
            size = min(size, max_rows - changed)
        batch_ids = eligible[position : position + size]
        outcome = run_batch(
            batch_ids, write=write, dry_run=result.dry_run, backup=backup, pause=pause, clock=clock
        )
        acted_ids = outcome.acted_ids
        if acted_ids is not None:
            sizer.record(rows=len(batch_ids), seconds=outcome.seconds)
        elif outcome.raced:
            sizer.halve()
        position += len(batch_ids)
        result.batches += 1
        result.last_id = batch_ids[-1]
        if acted_ids is None:
            result.skipped += len(batch_ids)
        elif result.dry_run:
            result.would_act += len(acted_ids)
        else:
            result.acted += len(acted_ids)
            result.changed_meanwhile += len(batch_ids) - len(acted_ids)
        if on_batch is not None:
            on_batch(
                BatchReport(
                    number=result.batches,
                    first_id=batch_ids[0],
                    last_id=batch_ids[-1],
                    size=len(batch_ids),
                    acted_ids=tuple(acted_ids or ()),
                    skipped=acted_ids is None,
                    done=position,
                    eligible=len(eligible),
                )
            )
        if sleep and position < len(eligible):
            # Cut short by an interrupt; the checks above then say why the run stops.
            _sleep_until(clock() + sleep, deadline, should_stop, clock=clock, pause=pause)


def _wait_for_standbys(
    result: CleanupResult,
    watch: StandbyWatch,
    limit_seconds: float,
    *,
    deadline: float | None,
    on_lag_wait: Callable[[LagWait], None] | None,
    should_stop: Callable[[], bool],
    clock: Callable[[], float],
    pause: Callable[[float], None],
) -> StopReason | None:
    """Wait while a standby is more than ``limit_seconds`` behind; why the run stops, if it must.

    The wait ends when every standby is within the limit (or gone), when the run's max_runtime has
    passed (``replication_lag``) or when it is asked to stop (``interrupted``). Each wait is
    counted, timed (also when a statement error ends it) and told to ``on_lag_wait`` when it
    begins, every ``LAG_REPORT_SECONDS`` while it lasts, and when it ends.
    """
    behind = _behind(watch, limit_seconds, result)
    if not behind:
        return None
    began = told = clock()
    result.replication_lag_waits += 1
    metrics.incr(LAG_WAITS_METRIC)
    logger.info(
        "regression_tracking.cleanup.replication_lag_wait",
        extra={"standbys": [{"name": s.name, "lag_seconds": s.lag_seconds} for s in behind]},
    )
    if on_lag_wait is not None:
        on_lag_wait(LagWait(behind=behind, waited_seconds=0.0, ended=False))
    vanished: list[str] = []
    stop = None
    try:
        while True:
            if deadline is not None and clock() >= deadline:
                stop = StopReason.REPLICATION_LAG
                break
            if should_stop():
                stop = StopReason.INTERRUPTED
                break
            if on_lag_wait is not None and clock() - told >= LAG_REPORT_SECONDS:
                told = clock()
                on_lag_wait(LagWait(behind=behind, waited_seconds=told - began, ended=False))
            _sleep_until(
                clock() + LAG_POLL_SECONDS, deadline, should_stop, clock=clock, pause=pause
            )
            behind = _behind(watch, limit_seconds, result)
            vanished += watch.vanished
            if not behind:
                break
    finally:
        waited = clock() - began
        result.replication_lag_wait_seconds += waited
        metrics.incr(LAG_WAITED_MS_METRIC, amount=round(waited * 1000))
    if on_lag_wait is not None:
        on_lag_wait(
            LagWait(
                behind=behind,
                waited_seconds=waited,
                ended=True,
                stop_reason=stop,
                vanished=tuple(vanished),
            )
        )
    return stop


def _behind(
    watch: StandbyWatch, limit_seconds: float, result: CleanupResult
) -> tuple[StandbyLag, ...]:
    """The standbys further behind than the limit now."""
    behind = tuple(s for s in watch.read() if s.lag_seconds > limit_seconds)
    result.standbys = watch.most_seen
    return behind


def _sleep_until(
    end: float,
    deadline: float | None,
    should_stop: Callable[[], bool],
    *,
    clock: Callable[[], float],
    pause: Callable[[float], None],
) -> None:
    """Sleep until ``end``, or the deadline if sooner, or until ``should_stop`` says so."""
    if deadline is not None:
        end = min(end, deadline)
    while (left := end - clock()) > 0 and not should_stop():
        pause(min(left, SLEEP_SLICE_SECONDS))
