"""Helpers for the reliability suite: large worlds in a few statements, checksums, figures.

Every reliability test records what it tried in ``FIGURES`` (printed at the end of the session by
``conftest.pytest_terminal_summary``), so the README's figures come from a real run.
"""

from __future__ import annotations

import hashlib
import json
import queue
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.db import connection
from django.utils import timezone

from regression_tracking.cleanup.backup import row_to_dict
from regression_tracking.models import (
    Group,
    GroupHash,
    Organization,
    Project,
    RegressionGroup,
)
from tests.factories import (
    GroupFactory,
    ProjectFactory,
    RegressionGroupFactory,
    issue_hash,
)
from tests.utils import ROOT, database_url, manage_command, manage_env, other_connection

COMMAND = "cleanup_orphaned_regressions"
INSERT_GROUP = (
    "INSERT INTO sentry_groupedmessage (project_id, logger, level, message, status, times_seen,"
    " last_seen, first_seen, type) VALUES (%s, '', 40, 'new issue', 0, 1, now(), now(), 1)"
    " RETURNING id"
)
INSERT_GROUPHASH = "INSERT INTO sentry_grouphash (project_id, hash, group_id) VALUES (%s, %s, %s)"

# Test name -> figure name -> value, for the README.
FIGURES: dict[str, dict[str, object]] = {}


def record_figures(test: str, **figures: object) -> None:
    """Keep the figures of a test and print them (shown with ``-s``, and in the session summary)."""
    FIGURES.setdefault(test, {}).update(figures)
    print(f"[reliability] {test}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


@dataclass
class World:
    projects: list[Project]
    # Orphans older than the grace period, in id order: what a default run acts on.
    eligible: list[int]
    # Rows with a live issue: never acted on.
    linked: list[int]
    # Orphans inside the grace period: never acted on by a default run.
    recent: list[int]
    # Eligible orphans whose GroupHash has no group (a discarded issue).
    discarded: list[int] = field(default_factory=list)
    # Eligible orphans that are inactive already (deactivate leaves them alone).
    inactive: list[int] = field(default_factory=list)

    @property
    def all_ids(self) -> list[int]:
        return sorted([*self.eligible, *self.linked, *self.recent])


def build_world(
    *,
    orphans: int,
    linked: int = 0,
    recent: int = 0,
    discarded: int = 0,
    inactive: int = 0,
    projects: int = 4,
) -> World:
    """Rows spread round-robin over ``projects`` new projects, created in a few bulk statements."""
    project_rows = ProjectFactory.create_batch(projects)
    old = timezone.now() - timedelta(days=2)
    young = timezone.now() - timedelta(hours=1)

    def build(count: int, **fields: object) -> list[RegressionGroup]:
        return [
            RegressionGroupFactory.build(project=project_rows[i % projects], **fields)
            for i in range(count)
        ]

    eligible_rows = build(orphans, date_added=old)
    for row in eligible_rows[:inactive]:
        row.active = False
    linked_rows = build(linked, date_added=old)
    recent_rows = build(recent, date_added=young)
    created = RegressionGroup.objects.bulk_create([*eligible_rows, *linked_rows, *recent_rows])
    eligible_rows = created[:orphans]
    linked_rows = created[orphans : orphans + linked]
    recent_rows = created[orphans + linked :]

    groups = Group.objects.bulk_create(
        GroupFactory.build(project_id=row.project_id) for row in linked_rows
    )
    dead = eligible_rows[-discarded:] if discarded else []
    GroupHash.objects.bulk_create(
        [
            *(
                GroupHash(project_id=row.project_id, hash=issue_hash(row), group=group)
                for row, group in zip(linked_rows, groups, strict=True)
            ),
            *(
                GroupHash(project_id=row.project_id, hash=issue_hash(row), group_tombstone_id=1)
                for row in dead
            ),
        ]
    )
    return World(
        projects=project_rows,
        eligible=sorted(row.id for row in eligible_rows),
        linked=sorted(row.id for row in linked_rows),
        recent=sorted(row.id for row in recent_rows),
        discarded=sorted(row.id for row in dead),
        inactive=sorted(row.id for row in eligible_rows[:inactive]),
    )


def database_checksum() -> str:
    """A digest of every column of every row of the five tables, on any database."""
    digest = hashlib.sha256()
    for model in (Organization, Project, Group, GroupHash, RegressionGroup):
        columns = [f.attname for f in model._meta.concrete_fields]
        for row in model.objects.order_by("pk").values_list(*columns):
            digest.update(repr(row).encode())
    return digest.hexdigest()


def regression_rows(ids: Iterable[int] | None = None) -> dict[int, dict[str, object]]:
    """Every RegressionGroup (or those of ``ids``) as its backup dict, by id."""
    rows = RegressionGroup.objects.order_by("id")
    if ids is not None:
        rows = rows.filter(id__in=list(ids))
    return {row.id: row_to_dict(row) for row in rows}


def remaining_ids() -> set[int]:
    return set(RegressionGroup.objects.values_list("id", flat=True))


def backup_ids(path: Path) -> set[int]:
    """Ids on the complete lines of a backup file (a line a kill cut short is not one)."""
    if not path.exists():
        return set()
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    return {json.loads(line)["id"] for line in lines if line.endswith("\n") and line.strip()}


def give_live_issue(row: RegressionGroup) -> None:
    """Commit a Group and a live GroupHash for ``row``'s issue key, on a connection of its own."""
    with other_connection() as creator:
        (group_id,) = creator.execute(INSERT_GROUP, [row.project_id]).fetchone()  # type: ignore[misc]
        creator.execute(INSERT_GROUPHASH, [row.project_id, issue_hash(row), group_id])


def current_database_name() -> str:
    return str(connection.settings_dict["NAME"])


def backends_of(application_name: str) -> list[int]:
    """Pids of this test database's backends tagged ``application_name`` (never anyone else's)."""
    with other_connection() as other:
        rows = other.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname = %s"
            " AND pid <> pg_backend_pid()",
            [application_name, current_database_name()],
        ).fetchall()
    return [int(pid) for (pid,) in rows]  # type: ignore[call-overload]


def terminate_backends_of(application_name: str) -> int:
    """``pg_terminate_backend`` on this test database's backends tagged ``application_name``."""
    pids = backends_of(application_name)
    with other_connection() as other:
        for pid in pids:
            other.execute("SELECT pg_terminate_backend(%s)", [pid])
    return len(pids)


def wait_for_no_backends(application_name: str, *, timeout: float = 10.0) -> None:
    """Until the server has dropped a killed client's session (and so its advisory lock)."""
    deadline = time.monotonic() + timeout
    while backends_of(application_name):
        assert time.monotonic() < deadline, f"backends of {application_name} still there"
        time.sleep(0.02)


class CommandProcess:
    """``manage.py cleanup_orphaned_regressions`` in a subprocess, its stdout read line by line.

    Tagged with ``application_name`` so the test can find (and only find) its backend.
    """

    def __init__(self, *args: str, application_name: str, url: str | None = None) -> None:
        url = url or database_url(application_name=application_name)
        env = {**manage_env(), "DATABASE_URL": url}
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            manage_command(COMMAND, *args),
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.stdout_lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._stderr: list[str] = []
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        self._stderr.append(self.process.stderr.read())

    def lines(self, *, timeout: float) -> Iterator[str]:
        """Stdout lines as they come; ends at end of output or when ``timeout`` has passed."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                return
            if line is None:
                return
            self.stdout_lines.append(line)
            yield line

    def wait(self, *, timeout: float = 60) -> int:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        self._reader.join(timeout=5)
        self._stderr_reader.join(timeout=5)
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.stdout_lines.append(line)
        self.elapsed = time.monotonic() - self.started
        return code

    @property
    def stdout(self) -> str:
        return "".join(self.stdout_lines)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def kill(self) -> None:
        self.process.kill()
