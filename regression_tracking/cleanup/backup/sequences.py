"""Keeping a table's id sequence past the ids written into it explicitly.

A row inserted with its own id (a restore) does not advance PostgreSQL's sequence behind the
primary key, identity column or ``bigserial`` alike: the next insert that takes its id from the
sequence would be handed one a restored row holds, and fail. Every path that writes explicit ids
calls ``advance_id_sequence`` in the same transaction, after its inserts.

Django's ``connection.ops.sequence_reset_sql`` is not used: it sets the sequence to max(id) even
when the sequence is already past it (rows handed out ids and deleted since), which would give the
next rows ids that were already used once, and that backups and logs still name.
"""

from __future__ import annotations

import logging

from django.db import DEFAULT_DB_ALIAS, ProgrammingError, connections, transaction
from django.db.models import AutoField, Model

from regression_tracking.cleanup.locking import sqlstate

# The logger keeps the name operators route in their logging configuration.
logger = logging.getLogger("regression_tracking.services.sequences")

# PostgreSQL's SQLSTATE for a missing privilege.
INSUFFICIENT_PRIVILEGE = "42501"
SEQUENCE_NOT_CHECKED_MESSAGE = (
    "id sequence not checked: the role may not read or set it; ids written explicitly may be "
    "handed out again"
)


def advance_id_sequence(model: type[Model], *, using: str = DEFAULT_DB_ALIAS) -> None:
    """Move ``model``'s id sequence past the table's highest id; never move it back.

    Does nothing when the table is empty or the sequence already hands out a higher id. Call it
    inside the transaction of the inserts, so it sees their rows and commits or rolls back with
    them. SQLite needs nothing: an ``INTEGER PRIMARY KEY`` takes max(rowid) + 1, and
    ``AUTOINCREMENT`` (what Django creates) raises ``sqlite_sequence`` on every insert above it.
    """
    connection = connections[using]
    pk = model._meta.pk
    if connection.vendor != "postgresql" or not isinstance(pk, AutoField):
        return
    table = connection.ops.quote_name(model._meta.db_table)
    column = connection.ops.quote_name(pk.column)
    with connection.cursor() as cursor:
        # The sequence the column's default or identity draws from, schema-qualified and quoted.
        cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [table, pk.column])
        row = cursor.fetchone()
        sequence = row[0] if row else None
        if sequence is None:
            # No sequence hands out its ids (a column without a default): nothing to advance.
            return
        # The next value is last_value + 1 once called, last_value itself before (a fresh
        # sequence, or one set with is_called false). One statement, so the sequence is read and
        # set together.
        try:
            # A savepoint: a refused statement must not abort the caller's transaction.
            with transaction.atomic(using=using):
                cursor.execute(
                    f"SELECT setval(%s::regclass, highest.id, true)"
                    f" FROM (SELECT max({column}) AS id FROM {table}) AS highest,"
                    f" {sequence} AS state"
                    " WHERE highest.id >= state.last_value"
                    " + CASE WHEN state.is_called THEN 1 ELSE 0 END",
                    [sequence],
                )
        except ProgrammingError as error:
            # A role granted only what the writes need (INSERT on the table) may not read the
            # sequence (SELECT) or set it (UPDATE). Its rows are written all the same: into the
            # database the ids were handed out by, the sequence is past them already.
            if sqlstate(error) != INSUFFICIENT_PRIVILEGE:
                raise
            logger.warning(
                SEQUENCE_NOT_CHECKED_MESSAGE,
                extra={
                    "table": model._meta.db_table,
                    "sequence": sequence,
                    "grant": f"GRANT SELECT, UPDATE ON SEQUENCE {sequence}",
                },
            )
