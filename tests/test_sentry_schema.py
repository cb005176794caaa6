"""The models read and write a database built from upstream Sentry's DDL, without migrations."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.apps import apps
from django.db import connection
from django.db.models import Field, ForeignKey

from regression_tracking.models import (
    Group,
    GroupHash,
    GroupStatus,
    Organization,
    Project,
    RegressionGroup,
    RegressionType,
)
from tests.sentry_schema import SENTRY_TABLES, SHIPPED_SENTRY_SCHEMA_SQL, load_sentry_schema

pytestmark = [pytest.mark.django_db, pytest.mark.postgresql]

SCHEMA = "sentry_upstream"

_DB_TYPE = re.compile(r"^(?P<base>[a-z ]+?)(?:\((?P<length>\d+)\))?$")
_ALIASES = {"varchar": "character varying"}


def _model_column_type(field: Field[object, object]) -> tuple[str, int | None]:
    if isinstance(field, ForeignKey):
        db_type = field.target_field.rel_db_type(connection)  # type: ignore[attr-defined]
    else:
        db_type = field.db_type(connection)
    assert db_type is not None
    match = _DB_TYPE.match(db_type)
    assert match, db_type
    base = _ALIASES.get(match["base"], match["base"])
    return base, int(match["length"]) if match["length"] else None


@pytest.fixture
def upstream_schema() -> None:
    load_sentry_schema(connection, SCHEMA)


# Upstream's columns of each table, in Sentry's model order (src/sentry/models/…): what the shipped
# DDL must create, no more, no fewer.
UPSTREAM_COLUMNS = {
    "sentry_organization": [
        "id", "name", "slug", "status", "date_added", "default_role", "flags", "is_test",
    ],
    "sentry_project": [
        "id", "slug", "name", "forced_color", "organization_id", "public", "date_added",
        "status", "first_event", "flags", "platform", "template_id", "external_id",
    ],
    "sentry_groupedmessage": [
        "id", "logger", "level", "message", "view", "num_comments", "platform", "status",
        "substatus", "times_seen", "last_seen", "first_seen", "first_release_id", "resolved_at",
        "active_at", "time_spent_total", "time_spent_count", "is_public", "data", "short_id",
        "type", "priority", "priority_locked_at", "seer_fixability_score",
        "seer_autofix_last_triggered", "project_id",
    ],
    "sentry_grouphash": [
        "id", "hash", "group_tombstone_id", "state", "group_id", "project_id", "date_added",
    ],
    "sentry_regressiongroup": [
        "id", "date_added", "date_updated", "date_regressed", "date_resolved", "version",
        "active", "project_id", "type", "fingerprint", "baseline", "regressed",
    ],
}  # fmt: skip

# Upstream's unique keys and the index the detector's lookups use.
UPSTREAM_UNIQUE = {
    ("sentry_organization", ("slug",)),
    ("sentry_project", ("organization_id", "slug")),
    ("sentry_groupedmessage", ("project_id", "short_id")),
    ("sentry_groupedmessage", ("project_id", "id")),
    ("sentry_grouphash", ("project_id", "hash")),
    ("sentry_regressiongroup", ("type", "project_id", "fingerprint", "version")),
}


def test_shipped_ddl_lives_in_the_repository() -> None:
    assert SHIPPED_SENTRY_SCHEMA_SQL.is_file()
    assert SHIPPED_SENTRY_SCHEMA_SQL.is_relative_to(Path(__file__).resolve().parent)


def test_shipped_ddl_creates_exactly_sentrys_five_tables_and_columns(upstream_schema) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = %s ORDER BY table_name, ordinal_position",
            [SCHEMA],
        )
        columns: dict[str, list[str]] = {}
        for table, column in cursor.fetchall():
            columns.setdefault(table, []).append(column)
    assert columns == UPSTREAM_COLUMNS
    assert set(columns) == SENTRY_TABLES


def test_shipped_ddl_has_sentrys_unique_keys_and_lookup_index(upstream_schema) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t.relname, array_agg(a.attname ORDER BY k.ord) "
            "FROM pg_index AS i JOIN pg_class AS t ON t.oid = i.indrelid "
            "JOIN pg_namespace AS n ON n.oid = t.relnamespace "
            "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
            "JOIN pg_attribute AS a ON a.attrelid = t.oid AND a.attnum = k.attnum "
            "WHERE n.nspname = %s AND i.indisunique AND NOT i.indisprimary "
            "GROUP BY i.indexrelid, t.relname",
            [SCHEMA],
        )
        unique = {(table, tuple(keys)) for table, keys in cursor.fetchall()}
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = %s",
            [SCHEMA, "sentry_regr_type_3a29e7_idx"],
        )
        (lookup_index,) = cursor.fetchone()
    assert unique == UPSTREAM_UNIQUE
    assert lookup_index.endswith("(type, project_id, fingerprint, active)")


def test_every_modelled_column_exists_upstream_with_a_compatible_type(upstream_schema) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name, data_type, character_maximum_length, is_nullable "
            "FROM information_schema.columns WHERE table_schema = %s",
            [SCHEMA],
        )
        upstream = {(row[0], row[1]): row[2:] for row in cursor.fetchall()}
    models = [Organization, Project, Group, GroupHash, RegressionGroup]
    checked = 0
    for model in models:
        for field in model._meta.concrete_fields:
            key = (model._meta.db_table, field.column)
            assert key in upstream, f"{key} is not a column of upstream Sentry"
            data_type, max_length, is_nullable = upstream[key]
            assert _model_column_type(field) == (data_type, max_length), key
            if is_nullable == "YES":
                assert field.null, f"{key} is nullable upstream, so the model must allow NULL"
            checked += 1
    assert checked == sum(len(m._meta.concrete_fields) for m in models)
    assert {m._meta.db_table for m in apps.get_app_config("regression_tracking").get_models()} == {
        m._meta.db_table for m in models
    }


def _insert_upstream_rows() -> dict[str, int]:
    """Rows as Sentry writes them, through plain SQL on upstream's tables."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO sentry_organization (name, slug, status, date_added) "
            "VALUES ('Acme', 'acme', 0, now()) RETURNING id"
        )
        org_id = cursor.fetchone()[0]
        cursor.execute(
            "INSERT INTO sentry_project (slug, name, organization_id, date_added, status) "
            "VALUES ('backend', 'Backend', %s, now(), 0) RETURNING id",
            [org_id],
        )
        project_id = cursor.fetchone()[0]
        cursor.execute(
            "INSERT INTO sentry_groupedmessage (project_id, level, message, view, status, "
            "substatus, times_seen, last_seen, first_seen, short_id, type) "
            "VALUES (%s, 40, 'Endpoint regression', '/api/health', 0, 7, 3, now(), now(), 1, 1018) "
            "RETURNING id",
            [project_id],
        )
        group_id = cursor.fetchone()[0]
        cursor.execute(
            "INSERT INTO sentry_grouphash (project_id, hash, group_id) "
            "VALUES (%s, md5('ff'), %s) RETURNING id",
            [project_id, group_id],
        )
        grouphash_id = cursor.fetchone()[0]
        # Upstream has no foreign key here: a regression can outlive its project.
        cursor.execute(
            "INSERT INTO sentry_regressiongroup (date_added, date_updated, date_regressed, "
            "version, active, project_id, type, fingerprint, baseline, regressed) VALUES "
            "(now(), now(), now(), 1, true, %s, 1, 'ff', 10, 30), "
            "(now(), now(), now(), 1, true, 999999, 0, 'ab', 10, 30) RETURNING id",
            [project_id],
        )
        regression_ids = [row[0] for row in cursor.fetchall()]
    return {
        "project": project_id,
        "group": group_id,
        "grouphash": grouphash_id,
        "regression": regression_ids[0],
        "stray_regression": regression_ids[1],
    }


def test_orm_reads_every_model_from_upstream_tables(upstream_schema) -> None:
    ids = _insert_upstream_rows()

    project = Project.objects.select_related("organization").get(id=ids["project"])
    assert (project.slug, project.organization.slug) == ("backend", "acme")

    group = Group.objects.get(id=ids["group"])
    assert (group.culprit, group.status, group.substatus, group.type) == (
        "/api/health",
        GroupStatus.UNRESOLVED,
        7,
        1018,
    )

    grouphash = GroupHash.objects.select_related("group").get(id=ids["grouphash"])
    assert grouphash.group == group
    assert grouphash.hash == "633de4b0c14ca52ea2432a3c8a5c4c31"

    regression = RegressionGroup.objects.get(id=ids["regression"])
    assert (regression.type, regression.fingerprint, regression.project_id) == (
        RegressionType.FUNCTION,
        "ff",
        ids["project"],
    )
    stray = RegressionGroup.objects.get(id=ids["stray_regression"])
    assert stray.project_id == 999999


def test_orm_writes_rows_that_upstream_accepts(upstream_schema) -> None:
    organization = Organization.objects.create(name="Beta", slug="beta")
    project = Project.objects.create(organization=organization, slug="web", name="Web")
    group = Group.objects.create(project=project, message="m", short_id=1)
    GroupHash.objects.create(project=project, hash="a" * 32, group=group)
    RegressionGroup.objects.create(
        project=project,
        type=RegressionType.ENDPOINT,
        fingerprint="a" * 40,
        version=1,
        date_regressed=group.first_seen,
        baseline=1.0,
        regressed=2.0,
    )
    with connection.cursor() as cursor:
        # Upstream's own defaults fill the columns the models leave out.
        cursor.execute("SELECT time_spent_total, is_public FROM sentry_groupedmessage")
        assert cursor.fetchall() == [(0, False)]
        cursor.execute(
            "SELECT count(*) FROM sentry_regressiongroup WHERE project_id = %s", [project.id]
        )
        assert cursor.fetchone() == (1,)
