"""One cleanup at a time: a PostgreSQL session advisory lock (a no-op on other databases)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections

# The advisory lock's class id: the first four bytes of "rgcl" (regression cleanup).
CLEANUP_LOCK_CLASS = 0x7267_636C


class CleanupAlreadyRunning(RuntimeError):
    """Another session holds the cleanup's advisory lock."""


@contextmanager
def advisory_lock(using: str, lock_id: int = 0) -> Iterator[None]:
    """Hold the session lock ``(CLEANUP_LOCK_CLASS, lock_id)`` or raise ``CleanupAlreadyRunning``.

    Session-level, so it spans the short batch transactions; it is released on exit, and by the
    server if the connection dies.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [CLEANUP_LOCK_CLASS, lock_id])
        (acquired,) = cursor.fetchone()
    if not acquired:
        raise CleanupAlreadyRunning(
            f"another cleanup holds the advisory lock ({CLEANUP_LOCK_CLASS}, {lock_id})"
        )
    try:
        yield
    finally:
        if connection.is_usable():
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [CLEANUP_LOCK_CLASS, lock_id])
