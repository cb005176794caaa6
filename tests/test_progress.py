"""The cleanup's progress bar (management/progress.py): tqdm, on a terminal only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management.base import OutputWrapper

from regression_tracking.management.progress import ProgressBar

START = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


class Terminal(StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def clock(time_machine):
    time_machine.move_to(START, tick=False)
    return time_machine


def test_nothing_off_a_terminal(clock) -> None:
    stream = StringIO()
    bar = ProgressBar(OutputWrapper(stream))
    bar.update(done=5, total=10, batch=1)
    bar.close()
    assert stream.getvalue() == ""


def test_no_batch_no_bar(clock) -> None:
    stream = Terminal()
    ProgressBar(OutputWrapper(stream)).close()
    assert stream.getvalue() == ""


def test_frames_with_rate_estimate_and_a_final_newline(clock) -> None:
    stream = Terminal()
    wrapper = OutputWrapper(stream)
    # The command's stderr colours what it writes as an error: the bar must not be red.
    wrapper.style_func = lambda text: f"\x1b[31m{text}\x1b[0m"
    bar = ProgressBar(wrapper)
    bar.update(done=250, total=1000, batch=1)
    clock.shift(timedelta(seconds=10))
    bar.update(done=500, total=1000, batch=2)
    # Within tqdm's 0.1 s redraw interval: counted, drawn at the next frame or at close.
    bar.update(done=750, total=1000, batch=3)
    bar.close()
    assert stream.getvalue().split("\r") == [
        "",
        # tqdm draws eighths of a cell as a digit on a stream that is not UTF-8.
        " 25% |#######5                      | 250/1000 rows, batch 1 [00:00<?]",
        # Since the first frame: 250 rows in 10 s, so 500 left take 20 s; then 500 in the same
        # 10 s, so the last 250 take 5 s.
        " 50% |###############               | 500/1000 rows, batch 2 [00:10<00:20]",
        " 75% |######################5       | 750/1000 rows, batch 3 [00:10<00:05]\n",
    ]
