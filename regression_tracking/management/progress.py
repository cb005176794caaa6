"""The cleanup's progress bar: tqdm on the command's stderr, only when stderr is a terminal."""

from __future__ import annotations

from django.core.management.base import OutputWrapper
from tqdm import tqdm

# Rate and time left come from tqdm; the rest reads as the summary does.
BAR_FORMAT = (
    "{percentage:3.0f}% |{bar:30}| {n_fmt}/{total_fmt} rows{postfix} [{elapsed}<{remaining}]"
)


class _Bar(tqdm):  # type: ignore[type-arg]
    # No monitor thread: the bar is updated once a batch and closed by the command.
    monitor_interval = 0


class _Unstyled:
    """Writes through a command's OutputWrapper as is: no added newline, no error colour."""

    def __init__(self, stream: OutputWrapper) -> None:
        self._stream = stream

    def write(self, text: str) -> None:
        self._stream.write(text, style_func=_as_is, ending="")

    def flush(self) -> None:
        self._stream.flush()


def _as_is(text: str) -> str:
    return text


class ProgressBar:
    """Rows done of the eligible, updated after each batch; does nothing off a terminal."""

    def __init__(self, stream: OutputWrapper) -> None:
        self._stream = stream
        self._enabled = stream.isatty()
        self._bar: _Bar | None = None

    def update(self, *, done: int, total: int, batch: int) -> None:
        if not self._enabled:
            return
        if self._bar is None:
            # Created at the first batch, when the total is known: its first frame shows it done.
            self._bar = _Bar(
                file=_Unstyled(self._stream),
                total=total,
                initial=done,
                bar_format=BAR_FORMAT,
                postfix=f"batch {batch}",
                leave=True,
            )
            return
        self._bar.set_postfix_str(f"batch {batch}", refresh=False)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        """Draw the last state and end the line (if a bar was drawn)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
