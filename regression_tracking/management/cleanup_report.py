"""What ``cleanup_orphaned_regressions`` prints: each batch as it goes, then the summary."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import OutputWrapper

from regression_tracking.durations import format_duration
from regression_tracking.management.list_output import DryRunListing
from regression_tracking.management.progress import ProgressBar
from regression_tracking.services import (
    BatchReport,
    CleanupAction,
    CleanupRequest,
    CleanupResult,
    LagWait,
    OrphanReason,
)

PAST_TENSE = {CleanupAction.DELETE: "deleted", CleanupAction.DEACTIVATE: "deactivated"}


def action_verb(action: CleanupAction, *, dry_run: bool) -> str:
    """``deleted``, ``deactivated``, or in a dry run ``would be deleted``."""
    verb = PAST_TENSE[CleanupAction(action)]
    return f"would be {verb}" if dry_run else verb


class CleanupReporter:
    """The run's output: a line per batch (``-v 2``), ids (``-v 3``), the progress bar on a
    terminal, the ``--list`` listing, then the summary (text or one JSON object)."""

    def __init__(
        self,
        stdout: OutputWrapper,
        stderr: OutputWrapper,
        request: CleanupRequest,
        *,
        verbosity: int,
        output_format: str,
        listing: DryRunListing | None,
    ) -> None:
        self.stdout = stdout
        self.request = request
        self.verbosity = verbosity
        self.output_format = output_format
        self.listing = listing
        self.batches_run = 0
        self.verb = action_verb(request.action, dry_run=request.dry_run)
        self.progress = ProgressBar(stderr)
        self.show_progress = output_format == "text" and verbosity >= 1 and stderr.isatty()

    def batch(self, batch: BatchReport) -> None:
        self.batches_run += 1
        if self.listing is not None:
            self.listing.add(batch)
        if self.verbosity >= 2 and self.output_format == "text":
            if batch.skipped:
                outcome = "skipped: rows locked by another transaction, or issues kept appearing"
            else:
                outcome = f"{len(batch.acted_ids)} {self.verb}"
            self.stdout.write(
                f"batch {batch.number}: ids {batch.first_id}..{batch.last_id} "
                f"({batch.size} candidates), {outcome}"
            )
            if self.verbosity >= 3:
                for regression_id in batch.acted_ids:
                    self.stdout.write(f"  {self.verb} regression group {regression_id}")
        if self.show_progress:
            self.progress.update(done=batch.done, total=batch.eligible, batch=batch.number)

    def lag_wait(self, wait: LagWait) -> None:
        """At -v 2 (text): when the run begins waiting for standbys, every 30 s while it waits,
        and when it goes on or stops."""
        if self.verbosity < 2 or self.output_format != "text":
            return
        lag = self.request.max_replication_lag
        assert lag is not None
        limit = f"--max-replication-lag {format_duration(lag)}"
        behind = ", ".join(f"{s.name} {s.lag_seconds:.2f}s behind" for s in wait.behind)
        for name in wait.vanished:
            self.stdout.write(f"standby {name} disconnected while behind: no longer waited for")
        if not wait.ended and not wait.waited_seconds:
            self.stdout.write(f"waiting for standbys: {behind} (over {limit})")
        elif not wait.ended:
            self.stdout.write(
                f"still waiting for standbys after {wait.waited_seconds:.0f}s: {behind} "
                f"(over {limit})"
            )
        elif wait.stop_reason is None:
            self.stdout.write(
                f"standbys within {limit} after a {wait.waited_seconds:.1f}s wait; going on"
            )
        else:
            self.stdout.write(
                f"stopped waiting for standbys after {wait.waited_seconds:.1f}s "
                f"({wait.stop_reason})"
            )

    def batches_hint(self) -> str:
        """Said only when batches committed: they stay done, and a rerun picks up the rest."""
        if not self.batches_run or self.request.dry_run:
            return ""
        return " (finished batches stay done; rerun to finish the job)"

    def close(self) -> None:
        self.progress.close()

    def summary(self, result: CleanupResult) -> None:
        summary: dict[str, Any] = result.as_dict()
        if self.listing is not None:
            summary.update(
                self.listing.write(
                    self.stdout,
                    result,
                    verb=self.verb,
                    output_format=self.output_format,
                    verbosity=self.verbosity,
                    using=self.request.using,
                )
            )
        if self.output_format == "json":
            self.stdout.write(json.dumps(summary))
        elif self.verbosity >= 1:
            self.stdout.write(format_summary(result, self.request))


def format_summary(result: CleanupResult, request: CleanupRequest) -> str:
    """The text summary: one ``name: value`` line per figure."""
    by_reason = ", ".join(f"{reason} {result.by_reason[reason]}" for reason in OrphanReason)
    verb = PAST_TENSE[result.action]
    if result.dry_run:
        acted_line = f"would be {verb}: {result.would_act} (dry run: nothing was changed)"
    else:
        acted_line = f"{verb}: {result.acted}"
    lines = [
        f"scanned: {result.scanned}",
        f"orphaned: {result.orphaned} ({by_reason})",
        f"too recent: {result.too_recent} (younger than {format_duration(request.min_age)})",
        f"eligible: {result.eligible}",
        acted_line,
    ]
    if result.skipped:
        lines.append(
            f"skipped: {result.skipped} (rows locked by another transaction, or issues kept "
            "appearing while their batch wrote)"
        )
    if result.changed_meanwhile:
        lines.append(
            f"changed meanwhile: {result.changed_meanwhile} "
            "(an issue appeared, or the row changed, before its batch)"
        )
    if result.not_reached:
        lines.append(f"not reached: {result.not_reached} (the run stopped first)")
    last_id = "-" if result.last_id is None else str(result.last_id)
    lines.append(f"batches: {result.batches}")
    if result.batch_sizes is not None:
        sizes = result.batch_sizes
        adapted = (
            f"adapted to --batch-time {request.batch_time:g}s"
            if request.batch_time and not request.dry_run
            else "fixed"
        )
        lines.append(
            f"batch sizes: {sizes['min']} to {sizes['max']}, last {sizes['last']} ({adapted})"
        )
    if request.max_replication_lag is not None:
        lines.append(standbys_line(result, request))
    lines += [
        f"last id: {last_id}",
        f"stop reason: {result.stop_reason}",
        f"elapsed: {result.elapsed_seconds:.2f}s",
    ]
    return "\n".join(lines)


def standbys_line(result: CleanupResult, request: CleanupRequest) -> str:
    """What --max-replication-lag found: no standby, or how often and how long the run waited."""
    assert request.max_replication_lag is not None
    limit = f"--max-replication-lag {format_duration(request.max_replication_lag)}"
    if not result.standbys:
        return f"standbys: none streaming from this server ({limit} had nothing to wait for)"
    waits = result.replication_lag_waits
    return (
        f"standbys: {result.standbys} seen; waited {waits} {'time' if waits == 1 else 'times'}, "
        f"{result.replication_lag_wait_seconds:.1f}s in all ({limit})"
    )
