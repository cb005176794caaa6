"""Hashing agrees with Sentry on a LATIN1 database.

PostgreSQL's ``md5(text)`` hashes the database's bytes; Sentry hashes the UTF-8 bytes. On a LATIN1
database a live RegressionGroup with a non-ASCII fingerprint must survive detection and delete, an
orphan must go, and the admin's issue column must show the live group.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection
from psycopg import sql

from tests.sentry_schema import _connect_kwargs, _server_connection
from tests.utils import ROOT, database_url, manage_command

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]

# Representable in LATIN1, and hashed differently from its UTF-8 bytes there.
LIVE_FINGERPRINT = "/api/café/naïve"
ORPHAN_FINGERPRINT = "/api/über"


@pytest.fixture
def latin1_database() -> Iterator[dict[str, Any]]:
    settings = connection.settings_dict
    name = f"latin1_{secrets.token_hex(6)}"
    with _server_connection(settings) as server:
        server.execute(
            sql.SQL(
                "CREATE DATABASE {} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'"
                " TEMPLATE template0"
            ).format(sql.Identifier(name))
        )
        try:
            target = _connect_kwargs(settings, name)
            _manage(name, "migrate", "--no-input")
            _manage(name, "shell", "-c", FILL)
            with psycopg.connect(**target, autocommit=True) as scratch:
                (encoding,) = scratch.execute("SHOW server_encoding").fetchone() or ("",)
                assert encoding == "LATIN1"
            yield target
        finally:
            server.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# Run in the LATIN1 database through manage.py shell: a live RegressionGroup with a non-ASCII
# fingerprint and an orphan, both 3 days old.
FILL = f"""
import hashlib
from datetime import timedelta
from django.utils import timezone
from regression_tracking.models import RegressionGroup
from tests.factories import GroupHashFactory, RegressionGroupFactory
live = RegressionGroupFactory.create(fingerprint={LIVE_FINGERPRINT!r})
GroupHashFactory.create(
    project=live.project, hash=hashlib.md5(live.fingerprint.encode()).hexdigest()
)
RegressionGroupFactory.create(project=live.project, fingerprint={ORPHAN_FINGERPRINT!r})
RegressionGroup.objects.update(date_added=timezone.now() - timedelta(days=3))
"""
# The admin's issue column for every row, as JSON.
ISSUE_COLUMN = """
import json
from regression_tracking.models import RegressionGroup
from regression_tracking.admin.queries import with_issue_links
print(json.dumps([
    [row.fingerprint, row.issue_group_id, row.issue_hash]
    for row in with_issue_links(RegressionGroup.objects.order_by("id"))
]))
"""


def _manage(dbname: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url().rsplit("/", 1)[0] + "/" + dbname,
        "REGRESSION_TRACKING_LOG_LEVEL": "WARNING",
        "SENTRY_DSN": "",
    }
    done = subprocess.run(
        manage_command(*args), env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done


def _cleanup(dbname: str, *args: str) -> dict[str, Any]:
    done = _manage(dbname, "cleanup_orphaned_regressions", "--format", "json", *args)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_a_live_non_ascii_fingerprint_survives_on_a_latin1_database(latin1_database) -> None:
    dbname = latin1_database["dbname"]
    dry = _cleanup(dbname, "--dry-run")
    assert (dry["scanned"], dry["orphaned"], dry["eligible"]) == (2, 1, 1)
    deleted = _cleanup(dbname)
    assert deleted["acted"] == 1
    [[fingerprint, group_id, issue_hash]] = json.loads(
        _manage(dbname, "shell", "-c", ISSUE_COLUMN).stdout.splitlines()[-1]
    )
    assert (fingerprint, issue_hash) == (
        LIVE_FINGERPRINT,
        hashlib.md5(LIVE_FINGERPRINT.encode()).hexdigest(),
    )
    assert group_id is not None
