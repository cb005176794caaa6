"""Restoring rows with their ids leaves the table's id sequence past them.

Rows inserted with explicit ids do not advance a PostgreSQL sequence (identity or ``bigserial``):
without a reset, the next ORM create is handed an id a restored row holds and fails on the
primary key. The reset must never move a sequence back, e.g. past rows deleted since.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import IntegrityError, connection, transaction

from regression_tracking.cleanup.backup import (
    restore_backup_file,
    row_to_dict,
)
from regression_tracking.cleanup.backup.sequences import (
    SEQUENCE_NOT_CHECKED_MESSAGE,
    advance_id_sequence,
)
from regression_tracking.models import Project, RegressionGroup
from regression_tracking.services import restore_regression_groups
from tests.factories import ProjectFactory, RegressionGroupFactory
from tests.sentry_schema import scratch_sentry_database
from tests.utils import database_url, run_manage

# A fresh database: sequences start at 1, as after ``migrate``.
fresh_database = pytest.mark.django_db(transaction=True, reset_sequences=True)

RESTORED = 60
CREATED = 200
STAMP = datetime(2026, 11, 1, tzinfo=UTC).isoformat()


def _rows(project_id: int, ids: range) -> list[dict[str, Any]]:
    return [
        {
            "id": row_id,
            "date_added": STAMP,
            "date_updated": STAMP,
            "date_regressed": STAMP,
            "date_resolved": None,
            "version": 1,
            "active": True,
            "project_id": project_id,
            "type": 0,
            "fingerprint": f"{row_id:040x}",
            "baseline": 100.0,
            "regressed": 250.0,
        }
        for row_id in ids
    ]


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _failed_creates(project: Project, count: int) -> int:
    """Create ``count`` rows through the ORM; how many failed on a duplicate key."""
    failed = 0
    for n in range(count):
        try:
            with transaction.atomic():
                RegressionGroupFactory.create(project=project, fingerprint=f"created-{n}")
        except IntegrityError:
            failed += 1
    return failed


@fresh_database
def test_creates_after_restoring_a_file_into_an_empty_table_all_succeed(tmp_path) -> None:
    project = ProjectFactory.create()
    path = _write(tmp_path / "backup.jsonl", _rows(project.id, range(1, RESTORED + 1)))

    result = restore_backup_file(path)

    assert result.restored == RESTORED
    assert _failed_creates(project, CREATED) == 0
    assert RegressionGroup.objects.count() == RESTORED + CREATED
    created = RegressionGroup.objects.filter(fingerprint__startswith="created-")
    assert min(created.values_list("id", flat=True)) == RESTORED + 1


@fresh_database
def test_creates_after_restoring_rows_in_memory_all_succeed() -> None:
    project = ProjectFactory.create()
    rows = [RegressionGroup(**row) for row in _rows(project.id, range(1, RESTORED + 1))]

    assert restore_regression_groups(rows).restored == RESTORED
    assert _failed_creates(project, CREATED) == 0


@pytest.mark.postgresql
@fresh_database
def test_the_restore_command_then_creates_all_succeed(tmp_path) -> None:
    project = ProjectFactory.create()
    path = _write(tmp_path / "backup.jsonl", _rows(project.id, range(1, RESTORED + 1)))

    result = run_manage("restore_regression_groups", str(path))

    assert result.returncode == 0, result.stderr
    assert _failed_creates(project, CREATED) == 0


@fresh_database
def test_a_rerun_that_skips_every_row_still_moves_the_sequence_past_them(tmp_path) -> None:
    # A database restored before the reset existed: the rows are there, the sequence behind them.
    project = ProjectFactory.create()
    RegressionGroup.objects.bulk_create(
        RegressionGroup(**row) for row in _rows(project.id, range(1, RESTORED + 1))
    )
    path = _write(tmp_path / "backup.jsonl", _rows(project.id, range(1, RESTORED + 1)))

    result = restore_backup_file(path)

    assert (result.restored, result.skipped_existing) == (0, RESTORED)
    assert _failed_creates(project, CREATED) == 0


@fresh_database
def test_a_sequence_past_the_restored_ids_is_not_moved_back() -> None:
    project = ProjectFactory.create()
    created = RegressionGroupFactory.create_batch(50, project=project)
    saved = [RegressionGroup(**row_to_dict(row)) for row in created[10:20]]
    RegressionGroup.objects.filter(id__gt=created[9].id).delete()

    assert restore_regression_groups(saved).restored == 10

    # The highest id now is created[19]'s; the sequence had handed out up to created[49]'s.
    assert RegressionGroupFactory.create(project=project).id == created[49].id + 1


@fresh_database
def test_an_empty_table_leaves_the_sequence_as_it_is() -> None:
    project = ProjectFactory.create()
    created = RegressionGroupFactory.create_batch(5, project=project)
    RegressionGroup.objects.all().delete()

    with transaction.atomic():
        advance_id_sequence(RegressionGroup)

    assert RegressionGroupFactory.create(project=project).id == created[-1].id + 1


@fresh_database
def test_a_refused_restore_leaves_the_sequence_as_it_is(tmp_path) -> None:
    project = ProjectFactory.create()
    rows = _rows(project.id, range(1, RESTORED + 1))
    rows[-1]["project_id"] = project.id + 1000
    path = _write(tmp_path / "backup.jsonl", rows)

    with pytest.raises(ValueError, match="do not exist"):
        restore_backup_file(path)

    assert RegressionGroup.objects.count() == 0
    assert RegressionGroupFactory.create(project=project).id == 1


# Sentry's own database: ``bigserial`` columns, no migrations, rows written by plain SQL.
SENTRY_FILL_SQL = """
INSERT INTO sentry_organization (name, slug, status, date_added) VALUES ('Acme', 'acme', 0, now());
INSERT INTO sentry_project (slug, name, organization_id, date_added, status)
SELECT 'backend', 'Backend', id, now(), 0 FROM sentry_organization;
"""
# Sentry's own inserts, the way its ORM makes them: the id from the sequence.
SENTRY_INSERTS_SQL = """
INSERT INTO sentry_regressiongroup (date_added, date_updated, date_regressed, version, active,
    project_id, type, fingerprint, baseline, regressed)
VALUES (now(), now(), now(), 1, true, %s, 1, %s, 100, 250)
"""


@pytest.fixture
def sentry_database() -> Iterator[dict[str, Any]]:
    with scratch_sentry_database(connection, prefix="sentry_sequences") as connect_kwargs:
        with psycopg.connect(**connect_kwargs, autocommit=True) as conn:
            conn.execute(SENTRY_FILL_SQL.encode())
        yield connect_kwargs


@pytest.mark.postgresql
@pytest.mark.django_db
def test_restore_into_a_sentry_database_leaves_its_bigserial_past_the_rows(
    sentry_database, tmp_path
) -> None:
    with psycopg.connect(**sentry_database, autocommit=True) as conn:
        ((project_id,),) = conn.execute(b"SELECT id FROM sentry_project").fetchall()
    path = _write(tmp_path / "backup.jsonl", _rows(project_id, range(1, RESTORED + 1)))
    url = database_url().rsplit("/", 1)[0] + "/" + sentry_database["dbname"]

    result = run_manage("restore_regression_groups", str(path), DATABASE_URL=url)

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"restored: {RESTORED}\nskipped (already present): 0\n"
    failed = 0
    with psycopg.connect(**sentry_database, autocommit=True) as conn:
        ((sequence,),) = conn.execute(
            b"SELECT pg_get_serial_sequence('sentry_regressiongroup', 'id')"
        ).fetchall()
        assert sequence is not None
        for n in range(CREATED):
            try:
                conn.execute(SENTRY_INSERTS_SQL.encode(), (project_id, f"sentry-{n}"))
            except psycopg.errors.UniqueViolation:
                failed += 1
        ((count, lowest_new),) = conn.execute(
            b"SELECT count(*), min(id) FILTER (WHERE fingerprint LIKE 'sentry-%%')"
            b" FROM sentry_regressiongroup"
        ).fetchall()
    assert failed == 0
    assert (count, lowest_new) == (RESTORED + CREATED, RESTORED + 1)


@pytest.mark.postgresql
@pytest.mark.django_db
def test_a_role_that_may_not_touch_the_sequence_restores_and_warns(caplog) -> None:
    project = ProjectFactory.create()
    role = f"restore_only_{secrets.token_hex(4)}"
    rows = [RegressionGroup(**row) for row in _rows(project.id, range(10_001, 10_011))]
    # CREATE ROLE and its grants roll back with the test's transaction.
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} NOLOGIN")
        cursor.execute(f"GRANT SELECT, INSERT ON sentry_regressiongroup, sentry_project TO {role}")
        cursor.execute(f"SET LOCAL ROLE {role}")

    with caplog.at_level(logging.WARNING, logger="regression_tracking.services.sequences"):
        result = restore_regression_groups(rows)

    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")
    assert result.restored == 10
    assert RegressionGroup.objects.filter(id__gt=10_000).count() == 10
    (record,) = caplog.records
    assert record.getMessage() == SEQUENCE_NOT_CHECKED_MESSAGE
    assert record.table == "sentry_regressiongroup"
    assert record.sequence == "public.sentry_regressiongroup_id_seq"
