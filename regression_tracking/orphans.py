"""The one definition of an orphan, as ORM expressions every reader and writer uses.

A RegressionGroup's *issue key* is ``(project_id, md5(fingerprint))``; its *live group* is a
GroupHash with that key and a non-null group. An orphan has none; its reason says whether a
GroupHash with the key exists (its group is NULL: the issue was discarded) or not.

Detection, each cleanup batch's DELETE/UPDATE (the race rule), the admin's filter and columns, the
versioning deactivation and the lookup's orphan reasons are all built from the functions here.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import (
    Case,
    CharField,
    Exists,
    Expression,
    F,
    Func,
    OuterRef,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.sql.compiler import SQLCompiler

from regression_tracking.models import GroupHash, RegressionGroup

# The issue is created asynchronously, so an orphan younger than this may simply not
# have its issue yet. Nothing acts on it.
GRACE_PERIOD = timedelta(hours=24)


class OrphanReason(enum.StrEnum):
    # No GroupHash has the key: the issue was never created, or deleted with its hashes.
    MISSING_GROUPHASH = "missing_grouphash"
    # A GroupHash has the key but no group: the issue was discarded (tombstoned).
    GROUPHASH_WITHOUT_GROUP = "grouphash_without_group"

    @classmethod
    def of(cls, *, grouphash_exists: bool) -> OrphanReason:
        """The reason of an orphan whose issue key does (or does not) have a GroupHash."""
        return cls.GROUPHASH_WITHOUT_GROUP if grouphash_exists else cls.MISSING_GROUPHASH


class IssueHash(Func):
    """md5 of the text's UTF-8 bytes, lowercase hex: Sentry's ``hash_fingerprint`` of one part.

    PostgreSQL's ``md5(text)`` hashes the text in the database's encoding, so on a LATIN1 database
    a non-ASCII fingerprint would hash differently from Sentry; ``convert_to(…, 'UTF8')`` hashes
    its UTF-8 bytes on every encoding. On a UTF8 database (Sentry's) the text's bytes already are
    UTF-8 and the conversion is skipped: it costs detection's one statement a noticeable share
    (benchmarks.shapes measures detection against the floor). The encoding is the server's
    ``server_encoding`` report on the connection. SQLite's ``MD5`` is Django's Python function over
    ``str.encode()`` (UTF-8).
    """

    function = "MD5"
    arity = 1
    output_field = CharField()

    def as_postgresql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any
    ) -> tuple[str, list[Any]]:
        if _server_encoding(connection) == "UTF8":
            sql, params = self.as_sql(compiler, connection, **extra_context)
        else:
            sql, params = self.as_sql(
                compiler,
                connection,
                template="MD5(CONVERT_TO(%(expressions)s, 'UTF8'))",
                **extra_context,
            )
        return sql, list(params)


def _server_encoding(connection: BaseDatabaseWrapper) -> str:
    """The PostgreSQL server's encoding, as it reported it when the connection opened.

    The statement being compiled is about to run on this connection, so opening it here costs
    nothing extra.
    """
    connection.ensure_connection()
    encoding: str = connection.connection.info.parameter_status("server_encoding")
    return encoding


def issue_key_grouphashes(
    *, project_id: Expression | F | None = None, fingerprint: Expression | F | None = None
) -> QuerySet[GroupHash]:
    """The GroupHashes with a RegressionGroup's issue key (at most one: the key is unique).

    By default the key is the outer RegressionGroup's (``OuterRef``), for ``Exists``/``Subquery``.
    """
    key: dict[str, Any] = {
        "project_id": project_id if project_id is not None else OuterRef("project_id"),
        "hash": IssueHash(fingerprint if fingerprint is not None else OuterRef("fingerprint")),
    }
    return GroupHash.objects.filter(**key)


def is_live_grouphash() -> Q:
    """True for a GroupHash that links a live group (its group is not NULL)."""
    return Q(group__isnull=False)


def has_live_group() -> Exists:
    """True when the outer RegressionGroup has a live group: the negation defines an orphan.

    Used negated (``~has_live_group()``), a ``NOT EXISTS`` that PostgreSQL runs as a (parallel)
    hash anti-join; never ``NOT IN``.
    """
    return Exists(issue_key_grouphashes().filter(is_live_grouphash()))


def has_grouphash() -> Exists:
    """True when a GroupHash has the outer RegressionGroup's issue key, live or not."""
    return Exists(issue_key_grouphashes())


def is_orphan() -> Q:
    """The orphan predicate as a filter on RegressionGroup querysets."""
    return Q(~has_live_group())


def orphan_reason() -> Case:
    """The reason of the outer RegressionGroup, assuming it is an orphan (filter on
    ``is_orphan()`` too)."""
    return Case(
        When(has_grouphash(), then=Value(OrphanReason.of(grouphash_exists=True).value)),
        default=Value(OrphanReason.of(grouphash_exists=False).value),
        output_field=CharField(),
    )


def is_orphan_with_reason(reason: OrphanReason) -> Q:
    """The orphans whose reason is ``reason``: the filter form of ``orphan_reason()``."""
    grouphash_exists = reason is OrphanReason.of(grouphash_exists=True)
    return is_orphan() & (Q(has_grouphash()) if grouphash_exists else ~Q(has_grouphash()))


def eligible_orphans(
    queryset: QuerySet[RegressionGroup], *, cutoff: datetime, active_only: bool = False
) -> QuerySet[RegressionGroup]:
    """The rows of ``queryset`` that are orphans older than ``cutoff`` (and active, if asked).

    Statements built on this re-state the predicate and the age cutoff in SQL (the race rule): a
    GroupHash committed before the statement runs saves its row.
    """
    return past_grace(queryset.filter(is_orphan()), cutoff=cutoff, active_only=active_only)


def past_grace(
    queryset: QuerySet[RegressionGroup], *, cutoff: datetime, active_only: bool = False
) -> QuerySet[RegressionGroup]:
    """The rows of ``queryset`` added before ``cutoff`` (and active, if asked): every condition
    of ``eligible_orphans`` but the orphan predicate, for a write whose orphan check comes after
    it (``cleanup.batches``)."""
    old = queryset.filter(date_added__lt=cutoff)
    return old.filter(active=True) if active_only else old


def lock_rows(rows: QuerySet[RegressionGroup]) -> list[int]:
    """Lock ``rows`` (``FOR UPDATE``, in id order) and return their ids; inside a transaction.

    Every write that acts on the orphan rule runs this first, in a statement of its own. In READ
    COMMITTED, a DELETE or UPDATE that waits on a row lock re-checks only that row when the lock is
    released, while the ``NOT EXISTS`` on GroupHash in its WHERE keeps the statement's starting
    snapshot: a GroupHash committed during the wait would not save the row. With the rows locked
    here, the write that follows never waits on them and decides on a snapshot taken after they
    were locked. A wait here is bounded by the transaction's ``lock_timeout``, where one is set.
    """
    return list(rows.select_for_update().order_by("id").values_list("id", flat=True))
