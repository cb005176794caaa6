"""The models read and write a database built from upstream Sentry's DDL, without migrations."""

from __future__ import annotations

import re

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
from tests.sentry_schema import SENTRY_SCHEMA_SQL, load_sentry_schema

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


def test_schema_file_is_the_one_from_shared() -> None:
    assert SENTRY_SCHEMA_SQL.name == "sentry_schema.sql"
    assert "CREATE TABLE sentry_regressiongroup" in SENTRY_SCHEMA_SQL.read_text()


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
