"""One cleanup at a time, every statement bounded: advisory locks, lock and statement timeouts.

An unsharded run holds ``(CLEANUP_LOCK_CLASS, 0)`` exclusively. A shard ``k/n`` holds that key
shared, so shards run side by side but never beside an unsharded run, plus
``(SHARD_LOCK_CLASS, n * MAX_SHARDS + k)`` exclusively, so each shard runs once at a time, and
``(SHARD_COUNT_LOCK_CLASS, n)`` shared: a shard of another count ``m`` covers other rows than
``k/n`` does and may overlap it, so it is refused while any run of count ``n`` holds the database.
That check and the lock are taken under a transaction-level gate lock, so two runs of different
counts starting together cannot both pass it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from typing import Any

from django.db import OperationalError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model

from regression_tracking.models import GroupHash, RegressionGroup

# The advisory locks' class ids: "rgcl" and "rgsh" (regression cleanup, regression shard).
CLEANUP_LOCK_CLASS = 0x7267_636C
SHARD_LOCK_CLASS = 0x7267_7368
# "rgsn" (shard count) and "rgsg" (the gate that makes the count check and its lock one step).
SHARD_COUNT_LOCK_CLASS = 0x7267_736E
SHARD_GATE_LOCK_CLASS = 0x7267_7367
MAX_SHARDS = 1024


class CleanupAlreadyRunning(RuntimeError):
    """Another session holds the cleanup's advisory lock."""


@contextmanager
def _session_lock(
    connection: BaseDatabaseWrapper, key: tuple[int, int], *, shared: bool = False
) -> Iterator[None]:
    suffix = "_shared" if shared else ""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT pg_try_advisory_lock{suffix}(%s, %s)", list(key))
        (acquired,) = cursor.fetchone()
    if not acquired:
        raise CleanupAlreadyRunning(f"another cleanup holds the advisory lock {key}")
    try:
        yield
    finally:
        # A connection that died (or was dropped) took its session's locks with it.
        if connection.connection is not None and connection.is_usable():
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT pg_advisory_unlock{suffix}(%s, %s)", list(key))


@contextmanager
def advisory_lock(using: str, shard: tuple[int, int] | None = None) -> Iterator[None]:
    """Hold the run's locks or raise ``CleanupAlreadyRunning``; released on exit.

    Session-level, so they span the short batch transactions; the server releases them if the
    connection dies.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        yield
        return
    with ExitStack() as locks:
        if shard is None:
            locks.enter_context(_session_lock(connection, (CLEANUP_LOCK_CLASS, 0)))
        else:
            index, count = shard
            locks.enter_context(_session_lock(connection, (CLEANUP_LOCK_CLASS, 0), shared=True))
            locks.enter_context(_shard_count_lock(connection, count))
            shard_key = (SHARD_LOCK_CLASS, count * MAX_SHARDS + index)
            locks.enter_context(_session_lock(connection, shard_key))
        yield


@contextmanager
def _shard_count_lock(connection: BaseDatabaseWrapper, count: int) -> Iterator[None]:
    """Hold the shard count's lock shared, or refuse while shards of another count run."""
    with transaction.atomic(using=connection.alias):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, 0)", [SHARD_GATE_LOCK_CLASS])
            cursor.execute(
                "SELECT DISTINCT objid FROM pg_locks WHERE locktype = 'advisory'"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND classid = %s AND objsubid = 2 AND objid <> %s AND granted",
                [SHARD_COUNT_LOCK_CLASS, count],
            )
            others = sorted(int(objid) for (objid,) in cursor.fetchall())
        if others:
            counts = ", ".join(f"/{other}" for other in others)
            raise CleanupAlreadyRunning(
                f"shards of another count ({counts}) are running; every shard of a run must use "
                f"the same count as --shard k/{count}"
            )
        lock = _session_lock(connection, (SHARD_COUNT_LOCK_CLASS, count), shared=True)
        lock.__enter__()
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


# PostgreSQL's SQLSTATEs: lock_not_available (lock_timeout expired) and query_canceled (a cancel
# request or statement_timeout).
LOCK_NOT_AVAILABLE = "55P03"
QUERY_CANCELED = "57014"
# How often a long statement's watcher asks should_stop().
CANCEL_POLL_SECONDS = 0.05


class StatementCancelled(Exception):
    """The statement was cancelled because the run was asked to stop."""


class StatementTimedOut(Exception):
    """The statement ran past its statement timeout."""


class DetectionLockTimeout(OperationalError):
    """Detection waited longer than its lock timeout for a table another session locks."""


def sqlstate(error: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE behind a Django database error, if any."""
    return getattr(error.__cause__, "sqlstate", None)


def _seconds_setting(duration: timedelta) -> str:
    return f"{max(1, int(duration.total_seconds() * 1000))}ms"


def set_local_timeouts(using: str, *, lock_timeout: str, statement_timeout: str) -> None:
    """Bound the current transaction's statements on PostgreSQL (settings such as ``"2s"``)."""
    set_local_settings(
        using, {"lock_timeout": lock_timeout, "statement_timeout": statement_timeout}
    )


def set_local_settings(using: str, settings: Mapping[str, str]) -> None:
    """Set PostgreSQL settings for the current transaction, in one statement; nothing elsewhere.

    ``set_config(…, true)`` lasts until the transaction ends, so nothing leaks into the session.
    """
    connection = connections[using]
    if connection.vendor != "postgresql" or not settings:
        return
    calls = ", ".join("set_config(%s, %s, true)" for _ in settings)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {calls}", [part for item in settings.items() for part in item])


def table_lock_holders(using: str, models: tuple[type[Model], ...]) -> list[str]:
    """The other sessions that hold or queue for an exclusive lock on the models' tables."""
    connection = connections[using]
    tables = [model._meta.db_table for model in models]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT l.pid, l.mode, l.granted, c.relname, coalesce(a.query, '')"
            " FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
            " LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE c.relname = ANY(%s) AND l.pid <> pg_backend_pid()"
            " AND l.mode = 'AccessExclusiveLock' ORDER BY l.granted DESC, l.pid",
            [tables],
        )
        return [
            f"pid {pid} {'holds' if granted else 'waits for'} {mode} on {table}"
            f" (query: {' '.join(query.split())[:200]!r})"
            for pid, mode, granted, table, query in cursor.fetchall()
        ]


@contextmanager
def bounded_statements(
    using: str,
    *,
    lock_timeout: timedelta,
    statement_timeout: timedelta,
    should_stop: Callable[[], bool],
    locked_models: tuple[type[Model], ...] = (RegressionGroup, GroupHash),
) -> Iterator[None]:
    """Run the block in one transaction whose statements are bounded and cancelled on stop.

    On PostgreSQL: ``lock_timeout`` and ``statement_timeout`` for the transaction, and a watcher
    thread that cancels the running statement as soon as ``should_stop()`` is true (a signal
    handler sets it; the statement may be waiting on a lock). Raises ``StatementCancelled``,
    ``StatementTimedOut``, or ``DetectionLockTimeout`` naming the sessions that lock the tables.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        yield
        return
    finished = threading.Event()
    cancelled = threading.Event()

    def watch(raw_connection: Any) -> None:
        while not finished.wait(CANCEL_POLL_SECONDS):
            if should_stop():
                cancelled.set()
                raw_connection.cancel_safe()
                return

    try:
        with transaction.atomic(using=using):
            set_local_timeouts(
                using,
                lock_timeout=_seconds_setting(lock_timeout),
                statement_timeout=_seconds_setting(statement_timeout),
            )
            watcher = threading.Thread(target=watch, args=(connection.connection,), daemon=True)
            watcher.start()
            try:
                yield
            finally:
                finished.set()
                watcher.join()
    except OperationalError as error:
        state = sqlstate(error)
        if state == QUERY_CANCELED and (cancelled.is_set() or should_stop()):
            raise StatementCancelled() from error
        if state == QUERY_CANCELED:
            raise StatementTimedOut() from error
        if state == LOCK_NOT_AVAILABLE:
            holders = table_lock_holders(using, locked_models)
            raise DetectionLockTimeout(
                f"detection waited {lock_timeout.total_seconds():g}s for a table lock and gave"
                f" up; {'; '.join(holders) or 'the holder has since let go'}. Nothing was changed."
            ) from error
        raise
