"""Sentry-database mode: the commands run against a database built from upstream's DDL alone.

Each test gets a scratch PostgreSQL database holding only Sentry's five tables (no migrations, no
Django tables), filled with plain SQL the way Sentry leaves them: bare ``project_id`` values, some
of a deleted project, upstream's extra columns at their defaults. The commands run as subprocesses
with ``DATABASE_URL`` pointing there, and every figure they print is checked against hand-written
SQL over the same tables, not against this project's code.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connection

from tests.sentry_schema import SENTRY_TABLES, scratch_sentry_database
from tests.utils import ROOT, database_url, manage_command

pytestmark = pytest.mark.postgresql

# What FILL_SQL builds, by kind of row (see its comments).
LINKED = 3000
LINKED_HISTORY = LINKED // 10
MISSING = 400
DISCARDED = 200
RECENT_MISSING = 5
RECENT_DISCARDED = 5
INACTIVE_ORPHANS = 100
DELETED_PROJECT = 50
OTHER_PROJECT_HASH = 20
NULL_PROJECT_HASH = 10

SCANNED = (
    LINKED
    + LINKED_HISTORY
    + MISSING
    + DISCARDED
    + RECENT_MISSING
    + RECENT_DISCARDED
    + INACTIVE_ORPHANS
    + DELETED_PROJECT
    + OTHER_PROJECT_HASH
    + NULL_PROJECT_HASH
)
WITHOUT_GROUP = DISCARDED + RECENT_DISCARDED
ORPHANED = SCANNED - LINKED - LINKED_HISTORY
TOO_RECENT = RECENT_MISSING + RECENT_DISCARDED
ELIGIBLE_FOR_DELETE = ORPHANED - TOO_RECENT
ELIGIBLE_FOR_DEACTIVATE = ELIGIBLE_FOR_DELETE - INACTIVE_ORPHANS

# libpq options that make every transaction of a session read-only.
READ_ONLY = "-c default_transaction_read_only=on"

# The rows as Sentry writes them: only the columns Sentry sets, so upstream's extra columns
# (organization flags, project platform, group time_spent_*, grouphash date_added, …) keep their
# defaults. Ten live projects plus "project-10", deleted at the end as Sentry's project deletion
# does: its issues and hashes go, its RegressionGroups stay (their project_id is a bare bigint).
FILL_SQL = """
INSERT INTO sentry_organization (name, slug, status, date_added) VALUES ('Acme', 'acme', 0, now());
INSERT INTO sentry_project (slug, name, organization_id, date_added, status)
SELECT 'project-' || p, 'Project ' || p, o.id, now(), 0
FROM generate_series(0, 10) AS p CROSS JOIN sentry_organization AS o;

CREATE TEMPORARY TABLE plan AS
WITH numbered AS (
    SELECT n, CASE
        WHEN n <= 3000 THEN 'linked'            -- a live issue (some resolved or ignored)
        WHEN n <= 3400 THEN 'missing'           -- the issue was never created, or deleted
        WHEN n <= 3600 THEN 'discarded'         -- GroupHash kept with group NULL and a tombstone
        WHEN n <= 3605 THEN 'recent_missing'    -- younger than the grace period
        WHEN n <= 3610 THEN 'recent_discarded'
        WHEN n <= 3710 THEN 'inactive_orphan'   -- an old closed version without an issue
        WHEN n <= 3760 THEN 'deleted_project'   -- its project (with issues and hashes) is gone
        WHEN n <= 3780 THEN 'other_project'     -- the same hash is live, but in another project
        ELSE 'null_project'                     -- the same hash on a GroupHash with no project
    END AS kind
    FROM generate_series(1, 3790) AS n
)
SELECT
    n,
    kind,
    CASE WHEN kind = 'deleted_project' THEN 'project-10' ELSE 'project-' || n % 10 END AS slug,
    n % 2 AS type,
    -- Endpoint: 40 hex characters like sha1; function: the function id in hex.
    CASE WHEN n % 2 = 0
        THEN left(encode(sha256(convert_to('/api/endpoint/' || n, 'UTF8')), 'hex'), 40)
        ELSE to_hex(1000000 + n)
    END AS fingerprint,
    kind <> 'inactive_orphan' AS active,
    CASE WHEN kind LIKE 'recent%' THEN now() - interval '1 hour'
        ELSE now() - interval '3 days' - n * interval '1 second'
    END AS added
FROM numbered;

-- The versions: one per row of the plan (version 2 where a closed version 1 exists) ...
INSERT INTO sentry_regressiongroup (date_added, date_updated, date_regressed, date_resolved,
    version, active, project_id, type, fingerprint, baseline, regressed)
SELECT plan.added, plan.added, plan.added - interval '12 hours',
    CASE WHEN plan.active THEN NULL ELSE plan.added + interval '1 day' END,
    CASE WHEN plan.kind = 'linked' AND plan.n % 10 = 0 THEN 2 ELSE 1 END,
    plan.active, p.id, plan.type, plan.fingerprint, 100 + plan.n % 50, 300 + plan.n % 70
FROM plan JOIN sentry_project AS p ON p.slug = plan.slug
ORDER BY plan.n;
-- ... and that closed version 1, linked to the same issue as its successor.
INSERT INTO sentry_regressiongroup (date_added, date_updated, date_regressed, date_resolved,
    version, active, project_id, type, fingerprint, baseline, regressed)
SELECT plan.added - interval '5 days', plan.added - interval '4 days',
    plan.added - interval '6 days', plan.added - interval '4 days',
    1, false, p.id, plan.type, plan.fingerprint, 90, 280
FROM plan JOIN sentry_project AS p ON p.slug = plan.slug
WHERE plan.kind = 'linked' AND plan.n % 10 = 0
ORDER BY plan.n;

-- Issues, as the issue platform creates them: in the row's project, or (other_project) in the
-- next one. Group types 1018 and 2011 are the endpoint and function regression issues.
INSERT INTO sentry_groupedmessage (project_id, level, message, "view", status, substatus,
    times_seen, last_seen, first_seen, short_id, type)
SELECT p.id, 30, 'Regression ' || plan.n, plan.fingerprint,
    (ARRAY[0, 1, 2])[plan.n % 3 + 1], (ARRAY[3, NULL, 1])[plan.n % 3 + 1],
    1, now(), now(), plan.n, CASE plan.type WHEN 0 THEN 1018 ELSE 2011 END
FROM plan JOIN sentry_project AS p ON p.slug = CASE plan.kind
    WHEN 'other_project' THEN 'project-' || (plan.n + 1) % 10 ELSE plan.slug END
WHERE plan.kind IN ('linked', 'deleted_project', 'other_project');
INSERT INTO sentry_grouphash (project_id, hash, group_id)
SELECT g.project_id, md5(plan.fingerprint), g.id
FROM plan JOIN sentry_groupedmessage AS g ON g.short_id = plan.n;
-- Discarded issues: the hash stays, with no group and the tombstone that swallows its events.
INSERT INTO sentry_grouphash (project_id, hash, group_id, group_tombstone_id)
SELECT p.id, md5(plan.fingerprint), NULL, plan.n
FROM plan JOIN sentry_project AS p ON p.slug = plan.slug
WHERE plan.kind IN ('discarded', 'recent_discarded');
INSERT INTO sentry_grouphash (project_id, hash)
SELECT NULL, md5(plan.fingerprint) FROM plan WHERE plan.kind = 'null_project';

-- Sentry's project deletion removes the project's issues and hashes, not its RegressionGroups.
DELETE FROM sentry_grouphash
WHERE project_id = (SELECT id FROM sentry_project WHERE slug = 'project-10');
DELETE FROM sentry_groupedmessage
WHERE project_id = (SELECT id FROM sentry_project WHERE slug = 'project-10');
DELETE FROM sentry_project WHERE slug = 'project-10';
"""

# Every RegressionGroup with what the cleanup must decide about it, written without the project's
# code: (project_id, md5(fingerprint)) is unique in sentry_grouphash, so a LEFT JOIN finds the one
# GroupHash a row can have; the row is orphaned unless that GroupHash has a group.
CLASSIFIED_SQL = """
SELECT rg.id, rg.project_id, rg.type, rg.active,
    gh.id IS NULL OR gh.group_id IS NULL AS orphaned,
    gh.id IS NOT NULL AND gh.group_id IS NULL AS without_group,
    rg.date_added < now() - interval '24 hours' AS old
FROM sentry_regressiongroup AS rg
LEFT JOIN sentry_grouphash AS gh
    ON gh.project_id = rg.project_id AND gh.hash = md5(rg.fingerprint)
"""

# The figures of a run, from CLASSIFIED_SQL's rows (``{condition}`` narrows them like an option).
EXPECTED_COUNTS_SQL = f"""
SELECT count(*),
    count(*) FILTER (WHERE orphaned),
    count(*) FILTER (WHERE without_group),
    count(*) FILTER (WHERE orphaned AND NOT old),
    count(*) FILTER (WHERE orphaned AND old),
    count(*) FILTER (WHERE orphaned AND old AND active)
FROM ({CLASSIFIED_SQL}) AS classified
WHERE {{condition}}
"""


class SentryDatabase:
    """The scratch database: plain SQL in, manage.py subprocesses against it."""

    def __init__(self, connect_kwargs: dict[str, Any]) -> None:
        self.connect_kwargs = connect_kwargs
        self.url = database_url().rsplit("/", 1)[0] + "/" + connect_kwargs["dbname"]

    def query(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(**self.connect_kwargs, autocommit=True) as conn:
            return conn.execute(statement.encode(), params).fetchall()

    def fill(self) -> None:
        with psycopg.connect(**self.connect_kwargs, autocommit=True) as conn:
            conn.execute(FILL_SQL.encode())
            conn.execute(b"ANALYZE")

    def manage(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "DATABASE_URL": self.url,
            "REGRESSION_TRACKING_LOG_LEVEL": "WARNING",
            "SENTRY_DSN": "",
            **extra_env,
        }
        return subprocess.run(
            manage_command(*args),
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def cleanup(self, *args: str, **extra_env: str) -> dict[str, Any]:
        """Run cleanup_orphaned_regressions with ``--format json``; its result, timing dropped."""
        result = self.manage("cleanup_orphaned_regressions", "--format", "json", *args, **extra_env)
        assert result.returncode == 0, result.stderr
        data: dict[str, Any] = json.loads(result.stdout)
        data.pop("elapsed_seconds")
        return data

    def expected_counts(self, condition: str = "TRUE") -> dict[str, int]:
        """The independent count over the rows of CLASSIFIED_SQL meeting ``condition``."""
        ((scanned, orphaned, without_group, too_recent, eligible, eligible_active),) = self.query(
            EXPECTED_COUNTS_SQL.format(condition=condition)
        )
        return {
            "scanned": scanned,
            "orphaned": orphaned,
            "without_group": without_group,
            "too_recent": too_recent,
            "eligible_delete": eligible,
            "eligible_deactivate": eligible_active,
        }

    def ids(self, condition: str) -> list[int]:
        """The ids of CLASSIFIED_SQL's rows meeting ``condition``, in id order."""
        rows = self.query(f"SELECT id FROM ({CLASSIFIED_SQL}) AS c WHERE {condition} ORDER BY id")
        return [row_id for (row_id,) in rows]

    def regression_rows(self) -> dict[int, str]:
        """Each RegressionGroup's whole row as text, by id."""
        return dict(self.query("SELECT id, rg::text FROM sentry_regressiongroup AS rg"))

    def other_tables(self) -> dict[str, str]:
        """A digest of every other table's rows, to show the cleanup never writes them."""
        digests = {}
        for table in sorted(SENTRY_TABLES - {"sentry_regressiongroup"}):
            ((digest,),) = self.query(
                f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) FROM {table} t"
            )
            digests[table] = digest
        return digests

    def tables(self) -> set[str]:
        rows = self.query(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        )
        return {name for (name,) in rows}


@pytest.fixture
def sentry_db() -> Iterator[SentryDatabase]:
    with scratch_sentry_database(connection) as connect_kwargs:
        database = SentryDatabase(connect_kwargs)
        database.fill()
        yield database


def expected_result(
    counts: dict[str, int], *, action: str, dry_run: bool, batch_size: int, last_id: int
) -> dict[str, Any]:
    """The JSON of a run that got through every batch, its figures from the independent count."""
    eligible = counts[f"eligible_{action}"]
    return {
        "dry_run": dry_run,
        "action": action,
        "scanned": counts["scanned"],
        "orphaned": counts["orphaned"],
        "by_reason": {
            "missing_grouphash": counts["orphaned"] - counts["without_group"],
            "grouphash_without_group": counts["without_group"],
        },
        "too_recent": counts["too_recent"],
        "eligible": eligible,
        "acted": 0 if dry_run else eligible,
        "would_act": eligible if dry_run else 0,
        "skipped": 0,
        "changed_meanwhile": 0,
        "not_reached": 0,
        "batches": -(-eligible // batch_size),
        "batch_sizes": {"min": batch_size, "max": batch_size, "last": batch_size},
        "last_id": last_id,
        "standbys": None,
        "replication_lag_waits": 0,
        "replication_lag_wait_seconds": 0.0,
        "stop_reason": "done",
    }


def test_the_fill_has_upstreams_shape(sentry_db) -> None:
    assert sentry_db.tables() == SENTRY_TABLES
    assert sentry_db.expected_counts() == {
        "scanned": SCANNED,
        "orphaned": ORPHANED,
        "without_group": WITHOUT_GROUP,
        "too_recent": TOO_RECENT,
        "eligible_delete": ELIGIBLE_FOR_DELETE,
        "eligible_deactivate": ELIGIBLE_FOR_DEACTIVATE,
    }
    # Rows of the deleted project, and upstream's own defaults in the columns Sentry left out.
    assert sentry_db.query(
        "SELECT count(*) FROM sentry_regressiongroup"
        " WHERE project_id NOT IN (SELECT id FROM sentry_project)"
    ) == [(DELETED_PROJECT,)]
    assert sentry_db.query(
        "SELECT DISTINCT time_spent_total, is_public FROM sentry_groupedmessage"
    ) == [(0, False)]


def test_dry_run_reports_the_independent_count_in_a_read_only_session(sentry_db) -> None:
    counts = sentry_db.expected_counts()
    eligible_ids = sentry_db.ids("orphaned AND old")
    rows, others = sentry_db.regression_rows(), sentry_db.other_tables()

    # As docs/sentry-database.md advises: the first look cannot write, whatever happens.
    data = sentry_db.cleanup("--dry-run", PGOPTIONS=READ_ONLY)

    assert data == expected_result(
        counts, action="delete", dry_run=True, batch_size=1000, last_id=eligible_ids[-1]
    )
    assert data["eligible"] == ELIGIBLE_FOR_DELETE
    functions_only = sentry_db.cleanup("--dry-run", "--type", "function", PGOPTIONS=READ_ONLY)
    function_ids = sentry_db.ids("orphaned AND old AND type = 1")
    assert functions_only == expected_result(
        sentry_db.expected_counts("type = 1"),
        action="delete",
        dry_run=True,
        batch_size=1000,
        last_id=function_ids[-1],
    )
    assert sentry_db.regression_rows() == rows
    assert sentry_db.other_tables() == others
    assert sentry_db.tables() == SENTRY_TABLES


def test_a_real_run_in_a_read_only_session_fails_and_changes_nothing(sentry_db) -> None:
    rows = sentry_db.regression_rows()

    failed = sentry_db.manage("cleanup_orphaned_regressions", PGOPTIONS=READ_ONLY)

    assert failed.returncode == 1
    assert "cannot execute DELETE in a read-only transaction" in failed.stderr
    assert sentry_db.regression_rows() == rows


def test_delete_removes_exactly_the_old_orphans_and_a_rerun_finds_none(sentry_db) -> None:
    counts = sentry_db.expected_counts()
    eligible_ids = sentry_db.ids("orphaned AND old")
    rows, others = sentry_db.regression_rows(), sentry_db.other_tables()

    data = sentry_db.cleanup("--batch-size", "100", "--batch-time", "0")

    assert data == expected_result(
        counts, action="delete", dry_run=False, batch_size=100, last_id=eligible_ids[-1]
    )
    kept = {row_id: row for row_id, row in rows.items() if row_id not in set(eligible_ids)}
    assert sentry_db.regression_rows() == kept
    assert len(kept) == SCANNED - ELIGIBLE_FOR_DELETE
    assert sentry_db.other_tables() == others
    # The deleted project's rows went with the other old orphans; the too-recent ones stay.
    assert sentry_db.query(
        "SELECT count(*) FROM sentry_regressiongroup"
        " WHERE project_id NOT IN (SELECT id FROM sentry_project)"
    ) == [(0,)]
    assert sentry_db.expected_counts()["orphaned"] == TOO_RECENT
    rerun = sentry_db.cleanup()
    assert (rerun["orphaned"], rerun["too_recent"], rerun["eligible"], rerun["acted"]) == (
        TOO_RECENT,
        TOO_RECENT,
        0,
        0,
    )
    assert sentry_db.tables() == SENTRY_TABLES


def test_deactivate_closes_exactly_the_old_active_orphans(sentry_db) -> None:
    counts = sentry_db.expected_counts()
    eligible_ids = sentry_db.ids("orphaned AND old AND active")
    rows, others = sentry_db.regression_rows(), sentry_db.other_tables()

    dry = sentry_db.cleanup("--dry-run", "--action", "deactivate")
    assert dry == expected_result(
        counts, action="deactivate", dry_run=True, batch_size=1000, last_id=eligible_ids[-1]
    )
    assert dry["eligible"] == ELIGIBLE_FOR_DEACTIVATE
    assert sentry_db.regression_rows() == rows

    data = sentry_db.cleanup("--action", "deactivate", "--batch-time", "0")

    assert data == expected_result(
        counts, action="deactivate", dry_run=False, batch_size=1000, last_id=eligible_ids[-1]
    )
    closed = sentry_db.query(
        "SELECT id FROM sentry_regressiongroup"
        " WHERE NOT active AND date_resolved > now() - interval '10 minutes'"
        " AND date_updated = date_resolved ORDER BY id"
    )
    assert [row_id for (row_id,) in closed] == eligible_ids
    after = sentry_db.regression_rows()
    assert after.keys() == rows.keys()
    untouched = rows.keys() - set(eligible_ids)
    assert {i: after[i] for i in untouched} == {i: rows[i] for i in untouched}
    assert sentry_db.other_tables() == others
    # Closed orphans are history now: still orphans, but nothing is left to deactivate.
    rerun = sentry_db.cleanup("--action", "deactivate")
    assert (rerun["orphaned"], rerun["eligible"], rerun["acted"]) == (ORPHANED, 0, 0)


def test_backup_of_a_project_scoped_delete_restores_every_row(sentry_db, tmp_path: Path) -> None:
    ((project_id,),) = sentry_db.query("SELECT id FROM sentry_project WHERE slug = 'project-3'")
    eligible_ids = sentry_db.ids(f"orphaned AND old AND project_id = {int(project_id)}")
    ((in_project,),) = sentry_db.query(
        "SELECT count(*) FROM sentry_regressiongroup WHERE project_id = %s", (project_id,)
    )
    rows = sentry_db.regression_rows()
    backup = tmp_path / "deleted.jsonl"

    data = sentry_db.cleanup("--project", str(project_id), "--backup", str(backup))

    assert (data["scanned"], data["eligible"], data["acted"], data["last_id"]) == (
        in_project,
        len(eligible_ids),
        len(eligible_ids),
        eligible_ids[-1],
    )
    assert eligible_ids
    assert sorted(rows.keys() - sentry_db.regression_rows().keys()) == eligible_ids
    saved = [json.loads(line) for line in backup.read_text().splitlines()]
    assert [row["id"] for row in saved] == eligible_ids

    restored = sentry_db.manage("restore_regression_groups", str(backup))

    assert restored.returncode == 0, restored.stderr
    assert restored.stdout == f"restored: {len(eligible_ids)}\nskipped (already present): 0\n"
    assert sentry_db.regression_rows() == rows
    assert sentry_db.tables() == SENTRY_TABLES
