"""How far the standbys are behind: the replay lag of each standby streaming from this server.

A cleanup that writes faster than the standbys replay makes them fall behind, and every reader on
a standby sees old data meanwhile. With ``max_replication_lag`` the run reads, before each batch,
what the primary knows of its standbys (``pg_stat_replication``) and waits while any is further
behind than that. A standby's lag is:

- 0 once it has replayed everything the primary has written (``replay_lsn`` at or past
  ``pg_current_wal_lsn()``): PostgreSQL keeps showing the last measured ``replay_lag`` until the
  standby's next status report (``wal_receiver_status_interval``, 10 s by default), long after
  the standby caught up;
- otherwise the larger of ``replay_lag`` and how long its replay position has not moved while WAL
  was waiting: the WAL it has not replayed was written before the first reading that saw the
  position stuck, so the standby is at least that far behind. PostgreSQL leaves ``replay_lag``
  empty in some stuck cases (a standby paused right after it had caught up and gone quiet).

Only connected standbys are in ``pg_stat_replication``: a standby that is down is not waited for.
Their lag columns are visible only to superusers and members of ``pg_read_all_stats`` (through
``pg_monitor`` as a rule), which ``check_readable`` checks before the run writes anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import connections

# A standby, as pg_stat_replication shows it: its walsender's pid, application_name, address, how
# far behind it is (seconds, NULL until measured), where its replay is, and whether it has
# replayed all the primary has written. A walsender with no replay position replays nothing (a
# base backup's or pg_receivewal's WAL stream) or has not reported yet: nothing to wait for.
_STANDBYS = """
SELECT pid, application_name, host(client_addr), EXTRACT(epoch FROM replay_lag)::float8,
       replay_lsn::text, replay_lsn >= pg_current_wal_lsn()
FROM pg_stat_replication
WHERE replay_lsn IS NOT NULL
ORDER BY pid
"""
_CAN_READ = (
    "SELECT current_user, pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')"
    " OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
)


class StandbyLagUnreadable(RuntimeError):
    """The run's role cannot see the standbys' replay lag."""

    def __init__(self, role: str) -> None:
        super().__init__(
            f"role {role!r} cannot read the standbys' replay lag: pg_stat_replication shows it "
            f"only to superusers and members of pg_read_all_stats; GRANT pg_monitor TO {role}"
        )
        self.role = role


@dataclass(frozen=True, slots=True)
class StandbyLag:
    # The standby's application_name and address, as an operator recognises it.
    name: str
    lag_seconds: float


class StandbyWatch:
    """The standbys' lag on ``using``, one reading at a time (see the module's docstring)."""

    def __init__(self, using: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.using = using
        self.clock = clock
        # Per standby (its walsender's pid): the replay position last read, and since when it has
        # stayed there while the standby was behind.
        self._stuck: dict[int, tuple[str | None, float]] = {}
        # The most standbys seen in one reading.
        self.most_seen = 0

    def check_readable(self) -> None:
        """Raise ``StandbyLagUnreadable`` unless this role may read the standbys' lag."""
        with connections[self.using].cursor() as cursor:
            cursor.execute(_CAN_READ)
            role, readable = cursor.fetchone()
        if not readable:
            raise StandbyLagUnreadable(role)

    def read(self) -> list[StandbyLag]:
        """Every connected standby and how far behind it is now."""
        with connections[self.using].cursor() as cursor:
            cursor.execute(_STANDBYS)
            rows = cursor.fetchall()
        now = self.clock()
        standbys = []
        stuck = {}
        for pid, application, address, replay_lag, replay_lsn, caught_up in rows:
            lag = 0.0
            if not caught_up:
                position, since = self._stuck.get(pid, (replay_lsn, now))
                if position != replay_lsn:
                    since = now
                stuck[pid] = (replay_lsn, since)
                lag = max(replay_lag or 0.0, now - since)
            standbys.append(StandbyLag(name=_name(pid, application, address), lag_seconds=lag))
        self._stuck = stuck
        self.most_seen = max(self.most_seen, len(standbys))
        return standbys


def _name(pid: int, application: str, address: str | None) -> str:
    """``walreceiver (10.0.0.5)``; a standby on the local socket has no address."""
    name = application or f"pid {pid}"
    return f"{name} ({address})" if address else name
