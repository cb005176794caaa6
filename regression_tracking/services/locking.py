"""One cleanup at a time: PostgreSQL session advisory locks (no-ops on other databases).

An unsharded run holds ``(CLEANUP_LOCK_CLASS, 0)`` exclusively. A shard ``k/n`` holds that key
shared, so shards run side by side but never beside an unsharded run, plus
``(SHARD_LOCK_CLASS, n * MAX_SHARDS + k)`` exclusively, so each shard runs once at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

# The advisory locks' class ids: "rgcl" and "rgsh" (regression cleanup, regression shard).
CLEANUP_LOCK_CLASS = 0x7267_636C
SHARD_LOCK_CLASS = 0x7267_7368
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
        if connection.is_usable():
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
            shard_key = (SHARD_LOCK_CLASS, count * MAX_SHARDS + index)
            locks.enter_context(_session_lock(connection, shard_key))
        yield
