"""The wait for standbys, step by step: a scripted lag on the run's own clock.

The lag itself is read from a real standby in ``tests/test_replication_lag.py``; here a stand-in
for ``StandbyWatch`` plays a sequence of readings, so the wait's rules (when it begins, how it is
told, counted and timed, what ends it) are checked on an exact timeline.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import DatabaseError

from regression_tracking.cleanup import run
from regression_tracking.cleanup.replication import StandbyWatch
from regression_tracking.services import (
    CleanupAction,
    CleanupResult,
    LagWait,
    StandbyLag,
    StopReason,
)

LIMIT = 10.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def pause(self, seconds: float) -> None:
        self.now += seconds


class ScriptedWatch(StandbyWatch):
    """Each reading returns one standby whose lag is ``lag(now)``."""

    def __init__(self, clock: FakeClock, lag: Callable[[float], float]) -> None:
        super().__init__("default", clock=clock)
        self.lag = lag
        self.readings = 0

    def read(self) -> list[StandbyLag]:
        self.readings += 1
        self.most_seen = 1
        return [StandbyLag(name="walreceiver (10.0.0.5)", lag_seconds=self.lag(self.clock()))]


def wait(
    lag: Callable[[float], float],
    *,
    deadline: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    clock: FakeClock | None = None,
) -> tuple[StopReason | None, CleanupResult, list[LagWait], FakeClock]:
    clock = clock or FakeClock()
    told: list[LagWait] = []
    result = CleanupResult(dry_run=False, action=CleanupAction.DELETE)
    stop = run._wait_for_standbys(
        result,
        ScriptedWatch(clock, lag),
        LIMIT,
        deadline=deadline,
        on_lag_wait=told.append,
        should_stop=should_stop,
        clock=clock,
        pause=clock.pause,
    )
    return stop, result, told, clock


def test_a_standby_within_the_limit_costs_one_reading_and_no_wait() -> None:
    stop, result, told, clock = wait(lambda now: LIMIT)
    assert (stop, result.replication_lag_waits, told, clock.now) == (None, 0, [], 0.0)
    assert result.standbys == 1


def test_the_wait_lasts_until_the_standby_is_within_the_limit() -> None:
    # 25 s behind, catching up one second per second: within 10 s after 15 s.
    stop, result, told, clock = wait(lambda now: 25.0 - now)
    assert stop is None
    assert clock.now == pytest.approx(15.0)
    assert result.replication_lag_waits == 1
    assert result.replication_lag_wait_seconds == pytest.approx(15.0)
    assert [(t.ended, round(t.waited_seconds, 6)) for t in told] == [(False, 0.0), (True, 15.0)]
    assert told[0].behind == (StandbyLag(name="walreceiver (10.0.0.5)", lag_seconds=25.0),)
    assert told[1].behind == ()


def test_a_long_wait_is_told_again_every_thirty_seconds() -> None:
    stop, _result, told, clock = wait(lambda now: 100.0 - now)
    assert stop is None
    assert clock.now == pytest.approx(90.0)
    assert [round(t.waited_seconds) for t in told if not t.ended] == [0, 30, 60]
    assert [t.ended for t in told] == [False, False, False, True]


def test_max_runtime_ends_the_wait_as_stop_reason_replication_lag() -> None:
    stop, result, told, clock = wait(lambda now: 60.0, deadline=12.5)
    assert stop is StopReason.REPLICATION_LAG
    assert clock.now == pytest.approx(12.5)
    assert result.replication_lag_wait_seconds == pytest.approx(12.5)
    assert told[-1].ended
    assert told[-1].stop_reason is StopReason.REPLICATION_LAG


def test_a_stop_request_ends_the_wait_within_a_sleep_slice() -> None:
    clock = FakeClock()
    stop, result, told, _ = wait(
        lambda now: 60.0, should_stop=lambda: clock.now >= 3.0, clock=clock
    )
    assert stop is StopReason.INTERRUPTED
    assert clock.now == pytest.approx(3.0, abs=run.SLEEP_SLICE_SECONDS)
    assert result.replication_lag_waits == 1
    assert told[-1].ended
    assert told[-1].stop_reason is StopReason.INTERRUPTED


def test_a_wait_ended_by_a_database_error_is_still_timed() -> None:
    clock = FakeClock()

    def lag(now: float) -> float:
        if now >= 4.0:
            raise DatabaseError("the connection was dropped")
        return 60.0

    result = CleanupResult(dry_run=False, action=CleanupAction.DELETE)
    with pytest.raises(DatabaseError):
        run._wait_for_standbys(
            result,
            ScriptedWatch(clock, lag),
            LIMIT,
            deadline=None,
            on_lag_wait=None,
            should_stop=lambda: False,
            clock=clock,
            pause=clock.pause,
        )
    assert result.replication_lag_waits == 1
    assert result.replication_lag_wait_seconds == pytest.approx(4.0)
