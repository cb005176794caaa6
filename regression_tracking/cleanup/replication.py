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

Only connected standbys are in ``pg_stat_replication``: a standby that is down is not waited for,
and one that disconnects while behind is reported as gone (``vanished``). Logical replication's
walsenders (a subscriber, a change-data-capture consumer) are not standbys and are left out. The
lag columns are visible only to superusers and members of ``pg_read_all_stats`` (through
``pg_monitor`` as a rule), which ``check_readable`` checks before the run writes anything, with
that the server is a primary.

What the primary knows is what each standby last reported: a standby reports when it receives WAL
and otherwise every ``wal_receiver_status_interval``. A standby that stopped replaying while no
WAL flowed looks like one that caught up until it next reports, and a standby that reconnects is
measured from its reconnection; so the first batches of a run, or those right after a reconnect,
may go before the wait begins.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import connections

# A standby, as pg_stat_replication shows it: its walsender's pid, application_name, address, how
# far behind it is (seconds, NULL until measured), where its replay is, and whether it has
# replayed all the primary has written. A walsender with no replay position replays nothing (a
# base backup's or pg_receivewal's WAL stream) or has not reported yet: nothing to wait for; one
# that serves a logical replication slot is not a standby.
_STANDBYS = """
SELECT r.pid, r.application_name, host(r.client_addr), EXTRACT(epoch FROM r.replay_lag)::float8,
       r.replay_lsn::text, r.replay_lsn >= pg_current_wal_lsn()
FROM pg_stat_replication r
WHERE r.replay_lsn IS NOT NULL
  AND NOT EXISTS (
    SELECT 1 FROM pg_replication_slots s WHERE s.active_pid = r.pid AND s.slot_type = 'logical'
  )
ORDER BY r.pid
"""
_CAN_READ = (
    "SELECT current_user, pg_is_in_recovery(),"
    " pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')"
    " OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
)


class StandbyLagUnreadable(RuntimeError):
    """The standbys' lag cannot be read here: the role may not, or the server is a standby."""


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
        # Per standby behind at the last reading (its walsender's pid): its name, its replay
        # position, and since when it has stayed there.
        self._stuck: dict[int, tuple[str, str | None, float]] = {}
        # The most standbys seen in one reading.
        self.most_seen = 0
        # The standbys behind at the reading before the last that the last one no longer saw:
        # disconnected (or stopped) while behind.
        self.vanished: tuple[str, ...] = ()

    def check_readable(self) -> None:
        """Raise ``StandbyLagUnreadable`` unless this role may read the standbys' lag."""
        with connections[self.using].cursor() as cursor:
            cursor.execute(_CAN_READ)
            role, in_recovery, readable = cursor.fetchone()
        if in_recovery:
            raise StandbyLagUnreadable(
                "this server is a standby (in recovery): the standbys' lag is read on the "
                "primary, so point the cleanup at the primary"
            )
        if not readable:
            raise StandbyLagUnreadable(
                f"role {role!r} cannot read the standbys' replay lag: pg_stat_replication shows "
                f"it only to superusers and members of pg_read_all_stats (with INHERIT); "
                f"GRANT pg_monitor TO {role}"
            )

    def read(self) -> list[StandbyLag]:
        """Every connected standby and how far behind it is now."""
        with connections[self.using].cursor() as cursor:
            cursor.execute(_STANDBYS)
            rows = cursor.fetchall()
        now = self.clock()
        standbys = []
        stuck = {}
        for pid, application, address, replay_lag, replay_lsn, caught_up in rows:
            name = _name(pid, application, address)
            lag = 0.0
            if not caught_up:
                _, position, since = self._stuck.get(pid, (name, replay_lsn, now))
                if position != replay_lsn:
                    since = now
                stuck[pid] = (name, replay_lsn, since)
                lag = max(replay_lag or 0.0, now - since)
            standbys.append(StandbyLag(name=name, lag_seconds=lag))
        seen = {pid for pid, *_ in rows}
        self.vanished = tuple(name for pid, (name, _, _) in self._stuck.items() if pid not in seen)
        self._stuck = stuck
        self.most_seen = max(self.most_seen, len(standbys))
        return standbys


def _name(pid: int, application: str, address: str | None) -> str:
    """``walreceiver (10.0.0.5)``; a standby on the local socket has no address."""
    name = application or f"pid {pid}"
    return f"{name} ({address})" if address else name
