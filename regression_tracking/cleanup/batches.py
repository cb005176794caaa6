"""One batch of the cleanup: a short transaction that writes its rows, then checks the rule.

On PostgreSQL the DELETE or UPDATE names the batch's ids and the age cutoff (``past_grace``) and
returns each changed row's issue key. It locks the rows itself; a row it waited on is re-checked
against the cutoff in its newest version, and the key returned is that version's. The orphan rule
is decided after it, before the batch commits: one statement on a fresh snapshot, so taken after
every row lock the write waited on and after the write itself, looks for a live group for each
row the write changed (``issue_appeared``). If one has appeared (a GroupHash committed since
detection, during a lock wait or while the write ran), the write is undone to a savepoint and run
again without that row. Creating an issue locks no RegressionGroup, so a snapshot taken earlier,
the write's own included, could miss it. On SQLite, where no issue can be committed while a
batch's transaction is open, the write re-states the orphan predicate itself (``eligible_orphans``).

With a backup, the batch's rows are locked first (``lock_rows``) and its eligible orphans read
and written to the backup before the write. Every statement is built from the rule in
``orphans``. Rows another transaction keeps locked past the lock timeout make the batch retry
and, after the last attempt, be skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.postgres.fields import ArrayField
from django.db import OperationalError, connections, transaction
from django.db.models import BigIntegerField, Expression, F, Lookup, QuerySet, TextField
from django.db.models.expressions import RawSQL
from django.db.models.sql import DeleteQuery, UpdateQuery

from regression_tracking.cleanup.backup import BackupWriter
from regression_tracking.cleanup.locking import LOCK_NOT_AVAILABLE, set_local_settings, sqlstate
from regression_tracking.models import GroupHash, RegressionGroup
from regression_tracking.orphans import (
    IssueHash,
    eligible_orphans,
    is_live_grouphash,
    lock_rows,
    past_grace,
)

# The logger keeps the name operators route in their logging configuration.
logger = logging.getLogger("regression_tracking.services.batches")

# Per batch transaction on PostgreSQL: wait this long for a row lock, then retry or skip the batch.
LOCK_TIMEOUT = "2s"
STATEMENT_TIMEOUT = "60s"
# The batch's check (and on SQLite its write) probes GroupHash's (project_id, hash) index once per
# row (a nested loop). For a batch of a few thousand ids PostgreSQL's estimate prefers hashing every
# live GroupHash, which it then builds again for every batch: on a table of a million GroupHashes
# that costs several times the whole batch (benchmarks.shapes times the delete at batch sizes up to
# the largest). A batch holds at most MAX_BATCH_SIZE rows, so the probes are always the cheaper
# plan.
BATCH_PLANNER_SETTINGS = {"enable_hashjoin": "off", "enable_mergejoin": "off"}
# Attempts at a batch whose rows stay locked by another transaction before it is skipped.
LOCK_ATTEMPTS = 3
LOCK_RETRY_PAUSE_SECONDS = 0.5
# Writes of a batch undone because an issue appeared while they ran, before the batch is skipped.
WRITE_ATTEMPTS = 5


class _BatchNotDone(Exception):
    """The batch changed nothing: issues kept appearing while its write ran."""


class _IssueAppeared(Exception):
    """Rows the write changed got a live group while it ran: undo the write (to the savepoint)."""

    def __init__(self, ids: list[int]) -> None:
        super().__init__(f"{len(ids)} rows got their issue while the write ran")
        self.ids = ids


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    # The ids the batch changed (or would change); None when its rows stayed locked.
    acted_ids: list[int] | None
    # How long its transaction took, from BEGIN to COMMIT (the attempt that ran, not the ones
    # that waited on locks); 0 for a skipped batch.
    seconds: float
    # Skipped because issues kept appearing among its rows while its write ran, through every
    # attempt: a smaller batch is exposed for less time.
    raced: bool = False


def run_batch(
    batch_ids: Sequence[int],
    *,
    write: BatchWrite,
    dry_run: bool,
    backup: BackupWriter | None,
    pause: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> BatchOutcome:
    """Run one batch: ``write`` deletes its eligible orphans or deactivates them."""
    for attempt in range(1, LOCK_ATTEMPTS + 1):
        started = clock()
        try:
            acted_ids = _run_batch(batch_ids, write=write, dry_run=dry_run, backup=backup)
            return BatchOutcome(acted_ids=acted_ids, seconds=clock() - started)
        except _BatchNotDone:
            return BatchOutcome(acted_ids=None, seconds=0.0, raced=True)
        except OperationalError as error:
            if sqlstate(error) != LOCK_NOT_AVAILABLE:
                raise
            logger.warning(
                "regression_tracking.cleanup.batch_locked",
                extra={
                    "first_id": batch_ids[0],
                    "last_id": batch_ids[-1],
                    "attempt": attempt,
                    "attempts": LOCK_ATTEMPTS,
                },
            )
            if attempt < LOCK_ATTEMPTS:
                pause(LOCK_RETRY_PAUSE_SECONDS)
    return BatchOutcome(acted_ids=None, seconds=0.0)


def id_array(ids: Sequence[int | str]) -> str:
    """``ids`` as the text of a PostgreSQL array, ``{1,2,3}``: one string for psycopg to quote.

    For values whose text needs no quoting in an array: integers, hexadecimal hashes. A list of
    ints is quoted element by element in Python (0.11 s per 100 batches of 1,000 ids).
    """
    return "{" + ",".join(map(str, ids)) + "}"


class BigIntArray(Expression):
    """The ids as one ``bigint[]`` parameter: the text of the array (``id_array``), cast."""

    output_field = ArrayField(BigIntegerField())

    def __init__(self, array_text: object) -> None:
        super().__init__()
        self.array_text = array_text

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        return "%s::bigint[]", [self.array_text]


class EqualsAny(Lookup):  # type: ignore[type-arg]
    """``lhs = ANY(rhs)``: ``rhs`` an array."""

    lookup_name = "equals_any"

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} = ANY({rhs})", [*lhs_params, *rhs_params]


class BatchWrite:
    """A run's write: one DELETE or UPDATE of a batch's eligible orphans, returning each changed
    row's id and issue key (``RETURNING id, project_id, md5(fingerprint)``, the hash as
    ``IssueHash`` computes it), and the check that none of those rows has meanwhile got its issue
    (``issue_appeared``).

    The statement is the one Django's ``QuerySet.delete()`` (a fast delete: RegressionGroup has
    no reverse relations) or ``.update()`` compiles from ``target``: on PostgreSQL the batch's
    rows past the grace period, the orphan rule left to ``issue_appeared`` (one probe of
    GroupHash per row instead of two: ``benchmarks.shapes`` times the delete against its floor);
    elsewhere the eligible orphans. Plus ``RETURNING id`` from Django's own
    ``return_insert_columns``: the ids changed come back from the same statement, where a
    separate SELECT would be a second statement per batch (1,000 batches of 1,000 rows: ~0.3 s
    more at 1M rows, a third of the delete's time).

    On PostgreSQL the batch's ids are the statement's one array parameter, so its text is the same
    for every batch: it is compiled once per run and each batch passes its ids. Compiling it per
    batch cost 0.14 s of the delete's 2.9 s at 1M rows (100 batches). Elsewhere (SQLite's
    ``id IN (…)`` has a placeholder per id) it is compiled per batch.
    """

    def __init__(self, *, deactivate: bool, cutoff: datetime, now: datetime, using: str) -> None:
        self.deactivate = deactivate
        self.cutoff = cutoff
        self.now = now
        self.using = using
        self._compiled: tuple[str, tuple[Any, ...], int] | None = None
        self._live_keys: tuple[str, tuple[Any, ...]] | None = None
        if connections[using].vendor == "postgresql":
            self._live_keys = self._live_keys_sql()
            marker = object()
            sql, params = self._sql(self._target(BigIntArray(marker)))
            [ids_index] = [i for i, param in enumerate(params) if param is marker]
            self._compiled = (sql, params, ids_index)

    def _sql(self, eligible: QuerySet[RegressionGroup]) -> tuple[str, tuple[Any, ...]]:
        connection = connections[self.using]
        query = eligible.query.chain(UpdateQuery if self.deactivate else DeleteQuery)
        if isinstance(query, UpdateQuery):
            query.add_update_values(
                {"active": False, "date_resolved": self.now, "date_updated": self.now}
            )
        sql, params = query.get_compiler(using=self.using).as_sql()
        meta = RegressionGroup._meta
        assert meta.pk is not None
        returning, returning_params = connection.ops.return_insert_columns(
            [meta.pk, meta.get_field("project")]
        )
        issue_hash, hash_params = self._issue_hash_sql(query)
        return (
            f"{sql} {returning}, {issue_hash}",
            (*params, *returning_params, *hash_params),
        )

    def _issue_hash_sql(self, query: Any) -> tuple[str, tuple[Any, ...]]:
        """The row's issue hash (``IssueHash`` of its fingerprint) as the write's target has it."""
        compiler = query.get_compiler(using=self.using)
        expression = IssueHash(F("fingerprint")).resolve_expression(query)
        sql, params = compiler.compile(expression)
        return sql, tuple(params)

    def _live_keys_sql(self) -> tuple[str, tuple[Any, ...]]:
        """Which of the changed rows (three arrays: ids, project ids, issue hashes) have a live
        group: the GroupHashes with that key (the hash the write returned) that are
        ``is_live_grouphash``, probed once per row."""
        live = GroupHash.objects.filter(
            project_id=RawSQL("changed.project_id", (), output_field=BigIntegerField()),
            hash=RawSQL("changed.hash", (), output_field=TextField()),
        ).filter(is_live_grouphash())
        exists, params = live.values("id").query.get_compiler(using=self.using).as_sql()
        return (
            "SELECT changed.id FROM unnest(%s::bigint[], %s::bigint[], %s::text[])"
            f" AS changed(id, project_id, hash) WHERE EXISTS ({exists})",
            tuple(params),
        )

    def issue_appeared(self, changed: Sequence[tuple[int, int, str]]) -> list[int]:
        """The ids among ``changed`` (id, project id, issue hash) that have a live group now.

        Run after the write, in a statement of its own: its snapshot sees every issue committed
        before the write ended, during its lock waits included. Only on PostgreSQL: SQLite lets
        one transaction write at a time, so no issue can be committed while a batch's
        transaction is open, and there the write re-states the orphan predicate. The three
        columns go as array texts (``id_array``; the hashes are hexadecimal), cheaper than
        lists of values.
        """
        if self._live_keys is None or not changed:
            return []
        ids, project_ids, hashes = zip(*changed, strict=True)
        sql, params = self._live_keys
        arrays = (id_array(ids), id_array(project_ids), id_array(hashes))
        with connections[self.using].cursor() as cursor:
            cursor.execute(sql, (*arrays, *params))
            return sorted(row[0] for row in cursor.fetchall())

    def eligible(self, batch_ids: Sequence[int]) -> QuerySet[RegressionGroup]:
        """The batch's rows that are eligible orphans now: what a backup of it holds."""
        return self._eligible_among(self._ids(batch_ids))

    def target(self, batch_ids: Sequence[int]) -> QuerySet[RegressionGroup]:
        """The batch's rows the write statement names (``_target``)."""
        return self._target(self._ids(batch_ids))

    def rows(self, batch_ids: Sequence[int]) -> QuerySet[RegressionGroup]:
        """The batch's rows, eligible or not: what it locks before deciding."""
        return self._among(self._ids(batch_ids))

    def _ids(self, batch_ids: Sequence[int]) -> BigIntArray | Sequence[int]:
        """On PostgreSQL ``id = ANY(%s)``, the ids as one array parameter: faster than 1,000
        scalar parameters per batch (benchmarks.alternatives, delete_batches_id_array/_list)."""
        if connections[self.using].vendor == "postgresql":
            return BigIntArray(id_array(batch_ids))
        return batch_ids

    def _among(self, ids: BigIntArray | Sequence[int]) -> QuerySet[RegressionGroup]:
        rows = RegressionGroup.objects.using(self.using)
        if isinstance(ids, BigIntArray):
            return rows.filter(EqualsAny(F("id"), ids))
        return rows.filter(id__in=ids)

    def _eligible_among(self, ids: BigIntArray | Sequence[int]) -> QuerySet[RegressionGroup]:
        return eligible_orphans(self._among(ids), cutoff=self.cutoff, active_only=self.deactivate)

    def _target(self, ids: BigIntArray | Sequence[int]) -> QuerySet[RegressionGroup]:
        """Where ``issue_appeared`` checks the rule after the write (PostgreSQL), the rows past
        the grace period; elsewhere the eligible orphans."""
        if self._live_keys is not None:
            return past_grace(self._among(ids), cutoff=self.cutoff, active_only=self.deactivate)
        return self._eligible_among(ids)

    def statement(self, batch_ids: Sequence[int]) -> tuple[str, tuple[Any, ...]]:
        """The statement and parameters for ``batch_ids``."""
        if self._compiled is None:
            return self._sql(self.target(batch_ids))
        sql, params, ids_index = self._compiled
        batch_params = list(params)
        batch_params[ids_index] = id_array(batch_ids)
        return sql, tuple(batch_params)


def set_batch_settings(using: str) -> None:
    """The batch transaction's settings: its timeouts and its plan (``BATCH_PLANNER_SETTINGS``)."""
    set_local_settings(
        using,
        {
            "lock_timeout": LOCK_TIMEOUT,
            "statement_timeout": STATEMENT_TIMEOUT,
            **BATCH_PLANNER_SETTINGS,
        },
    )


def _run_batch(
    batch_ids: Sequence[int],
    *,
    write: BatchWrite,
    dry_run: bool,
    backup: BackupWriter | None,
) -> list[int]:
    if dry_run:
        # The same batches, minus the writes: a dry run changes nothing, so re-checking each
        # batch against the database would only cost a second pass over the orphans.
        return list(batch_ids)
    with transaction.atomic(using=write.using):
        set_batch_settings(write.using)
        if backup is not None:
            # Locked first, in a statement of its own, so what is written to the backup is what
            # the write below sees, and the write never waits on these rows.
            batch_ids = lock_rows(write.rows(batch_ids))
            if batch_ids:
                rows = list(write.eligible(batch_ids).order_by("id"))
                backup.write(rows)
                batch_ids = [row.id for row in rows]
        if not batch_ids:
            return []
        return _write_checked(write, batch_ids)


def _write_checked(write: BatchWrite, batch_ids: Sequence[int]) -> list[int]:
    """The write, kept only if no row it changed got its issue meanwhile; the ids it changed.

    Each attempt runs under a savepoint: when an issue appeared while the write ran, the write is
    undone and run again without those rows. Raises ``_BatchNotDone`` after ``WRITE_ATTEMPTS``.
    """
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        try:
            with transaction.atomic(using=write.using):
                changed = _write(write, batch_ids)
                if appeared := write.issue_appeared(changed):
                    raise _IssueAppeared(appeared)
                return [row_id for row_id, _, _ in changed]
        except _IssueAppeared as error:
            logger.info(
                "regression_tracking.cleanup.issue_appeared",
                extra={"ids": error.ids, "attempt": attempt, "attempts": WRITE_ATTEMPTS},
            )
            kept = set(error.ids)
            batch_ids = [row_id for row_id in batch_ids if row_id not in kept]
            if not batch_ids:
                return []
    raise _BatchNotDone()


def _write(write: BatchWrite, batch_ids: Sequence[int]) -> list[tuple[int, int, str]]:
    """Run the write statement for ``batch_ids``; each changed row's id, project id and
    fingerprint, in id order."""
    sql, params = write.statement(batch_ids)
    with connections[write.using].cursor() as cursor:
        cursor.execute(sql, params)
        return sorted(cursor.fetchall())
