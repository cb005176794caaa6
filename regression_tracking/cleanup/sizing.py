"""Batches sized by time: each batch's size adapts so its transaction takes about the target.

The next size is what the last batch's rate (rows per second of its transaction) would do in the
target time, within 1 and ``MAX_BATCH_SIZE``, and never more than twice the size before: one quick
batch (an idle moment, a cached page) cannot make the next one ten times longer. A slow batch
shrinks the next one at once, since a long transaction is what the target guards against. With no
target (0) every batch keeps the first size.
"""

from __future__ import annotations

import math

# The largest batch: rows per write transaction, whatever the time target.
MAX_BATCH_SIZE = 10_000
# The most a batch may grow over the one before it.
MAX_GROWTH = 2


class BatchSizer:
    """The size of the next batch, from the first size and how long batches took."""

    def __init__(self, *, first: int, target_seconds: float) -> None:
        self.size = first
        self.target_seconds = target_seconds
        self._chosen: list[int] = []

    def start_batch(self) -> int:
        """The size for the batch about to run, recorded as used."""
        self._chosen.append(self.size)
        return self.size

    def record(self, *, rows: int, seconds: float) -> None:
        """A batch of ``rows`` rows took ``seconds``: choose the next size."""
        if not self.target_seconds or rows < 1:
            return
        ceiling = min(MAX_BATCH_SIZE, self.size * MAX_GROWTH)
        if seconds <= 0:
            self.size = ceiling
            return
        wanted = math.floor(rows * self.target_seconds / seconds)
        self.size = max(1, min(ceiling, wanted))

    def halve(self) -> None:
        """The last batch could not be done in one piece: make the next one half as large."""
        self.size = max(1, self.size // 2)

    def used(self) -> dict[str, int] | None:
        """The sizes chosen for the batches run (the smallest, the largest, the last), or None."""
        if not self._chosen:
            return None
        return {"min": min(self._chosen), "max": max(self._chosen), "last": self._chosen[-1]}
