"""The function flow the port writes, run: nothing is written before the emission.

The port is applied to the Sentry-shaped sources of ``tests/port_sources``; the rewritten
detector and tasks modules and the port's own ``orphans.py`` are then imported with stand-ins for
the Sentry modules they import. The stand-ins keep a journal of the emission (the call of the
profiling service) and of every write (a resolved version closed, an orphan deactivated), so the
order of writes and emission is what the tests assert. No database: the one function that runs
SQL, ``deactivate_orphans``, is a stand-in as well.
"""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import pytest

from port.cli import main

SOURCES = Path(__file__).parent / "port_sources"
NOW = datetime.now(UTC)
RESOLVED = 1


@dataclass(eq=False)
class Group:
    """A RegressionGroup as the sources use it (hashed by identity: the sources key by it)."""

    id: int
    transaction: str
    version: int = 1
    active: bool = True
    date_regressed: datetime = NOW - timedelta(days=5)
    date_added: datetime = NOW - timedelta(days=2)
    project_id: int = 1

    @property
    def fingerprint(self) -> str:
        return f"fingerprint of {self.transaction}"


@dataclass
class World:
    groups: dict[str, Group] = field(default_factory=dict)
    # The issue of each group that has one: its status.
    issues: dict[int, int] = field(default_factory=dict)
    status: int = 200
    journal: list[tuple[str, list[object]]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    # Runs _detect_function_change_points on these regressions (set by the fixture).
    detect: Callable[[list[dict[str, Any]]], None] = lambda regressions: None


def _module(name: str, **attributes: object) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


def _chunked(iterable: Any, size: int) -> Iterator[list[Any]]:
    iterator = iter(iterable)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _stand_ins(world: World) -> dict[str, types.ModuleType]:
    class Objects:
        def bulk_update(self, groups: list[Group], fields: list[str]) -> None:
            assert fields == ["active"]
            if groups:
                world.journal.append(("close", sorted(g.transaction for g in groups)))
            for group in groups:
                world.groups[group.transaction].active = group.active

        def bulk_create(self, rows: list[object]) -> None:
            assert rows == []

    class RegressionGroup:
        objects = Objects()

    def get_regression_groups(regression: dict[str, Any]) -> Group | None:
        # A copy, as a query gives: setting its attributes writes nothing.
        group = world.groups.get(regression["transaction"])
        return replace(group) if group is not None and group.active else None

    def bulk_get_groups_from_fingerprints(keys: list[Group]) -> dict[Group, object]:
        return {
            key: types.SimpleNamespace(status=world.issues[key.id])
            for key in keys
            if key.id in world.issues
        }

    def get_from_profiling_service(path: str, payloads: list[object]) -> object:
        # The sources' payloads carry the breakpoint only: the journal counts them.
        world.journal.append(("emit", [len(payloads)]))
        data = json.dumps({"occurrences": len(payloads)}).encode()
        return types.SimpleNamespace(status=world.status, data=data)

    def incr(key: str, amount: int = 1, **_: object) -> None:
        world.counters[key] = world.counters.get(key, 0) + amount

    def instrumented_task(**_: object) -> Any:
        return lambda function: function

    class Project:
        objects = types.SimpleNamespace(all=lambda: [types.SimpleNamespace(id=1)])

    metrics = _module("sentry.utils.metrics", incr=incr)
    return {
        "sentry": _module("sentry", options=types.SimpleNamespace(get=lambda key: True)),
        "sentry.issues.status_change_consumer": _module(
            "sentry.issues.status_change_consumer",
            bulk_get_groups_from_fingerprints=bulk_get_groups_from_fingerprints,
        ),
        "sentry.models.group": _module(
            "sentry.models.group", GroupStatus=types.SimpleNamespace(RESOLVED=RESOLVED)
        ),
        "sentry.models.grouphash": _module("sentry.models.grouphash", GroupHash=object),
        "sentry.models.project": _module("sentry.models.project", Project=Project),
        "sentry.models.statistical_detectors": _module(
            "sentry.models.statistical_detectors",
            RegressionGroup=RegressionGroup,
            get_regression_groups=get_regression_groups,
        ),
        "sentry.profiles.utils": _module(
            "sentry.profiles.utils", get_from_profiling_service=get_from_profiling_service
        ),
        "sentry.seer.breakpoints": _module("sentry.seer.breakpoints", BreakpointData=dict),
        "sentry.statistical_detectors.base": _module(
            "sentry.statistical_detectors.base",
            DetectorPayload=object,
            DetectorState=object,
            TrendType=object,
        ),
        "sentry.tasks.base": _module("sentry.tasks.base", instrumented_task=instrumented_task),
        "sentry.taskworker.namespaces": _module(
            "sentry.taskworker.namespaces", performance_tasks=object()
        ),
        "sentry.types.group": _module(
            "sentry.types.group", GroupSubStatus=types.SimpleNamespace(ONGOING=1)
        ),
        "sentry.utils": _module("sentry.utils", json=json, metrics=metrics),
        "sentry.utils.iterators": _module("sentry.utils.iterators", chunked=_chunked),
        "sentry.utils.metrics": metrics,
    }


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    """The ported sources imported over the stand-ins; the world they read and write."""
    root = tmp_path / "sentry"
    for source, path in [
        ("detector.py.txt", "src/sentry/statistical_detectors/detector.py"),
        ("tasks.py.txt", "src/sentry/tasks/statistical_detectors.py"),
        ("server.py.txt", "src/sentry/conf/server.py"),
        ("defaults.py.txt", "src/sentry/options/defaults.py"),
    ]:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SOURCES / source, root / path)
    (root / "tests/sentry/statistical_detectors").mkdir(parents=True)
    (root / "tests/sentry/tasks").mkdir(parents=True)
    assert main([str(root)], stdout=io.StringIO()) == 0

    state = World()
    for name, module in _stand_ins(state).items():
        monkeypatch.setitem(sys.modules, name, module)
    modules = {}
    for name, path in [
        ("sentry.statistical_detectors.orphans", "statistical_detectors/orphans.py"),
        ("sentry.statistical_detectors.detector", "statistical_detectors/detector.py"),
        ("sentry.tasks.statistical_detectors", "tasks/statistical_detectors.py"),
    ]:
        spec = importlib.util.spec_from_file_location(name, root / "src/sentry" / path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        modules[name] = module

    def deactivate_orphans(ids: list[int], *, now: datetime) -> set[int]:
        if ids:
            names = [g.transaction for g in state.groups.values() if g.id in ids]
            state.journal.append(("deactivate", sorted(names)))
        for group in state.groups.values():
            if group.id in ids:
                group.active = False
        return set(ids)

    monkeypatch.setattr(
        modules["sentry.statistical_detectors.orphans"], "deactivate_orphans", deactivate_orphans
    )
    tasks = modules["sentry.tasks.statistical_detectors"]
    state.detect = lambda regressions: _detect(tasks, regressions)
    return state


def _detect(tasks: types.ModuleType, regressions: list[dict[str, Any]]) -> None:
    detector = tasks.FunctionRegressionDetector
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            detector,
            "detect_regressions",
            classmethod(lambda cls, functions, start: iter(regressions)),
            raising=False,
        )
        tasks._detect_function_change_points([], NOW)


def regression(transaction: str, *, hours_ago: int = 12) -> dict[str, Any]:
    return {
        "project": "1",
        "transaction": transaction,
        "breakpoint": (NOW - timedelta(hours=hours_ago)).timestamp(),
    }


def three_regressions(world: World) -> list[dict[str, Any]]:
    """A new function, one whose active version's issue is resolved, one whose is an orphan."""
    world.groups["resolved"] = Group(id=1, transaction="resolved")
    world.issues[1] = RESOLVED
    world.groups["orphan"] = Group(id=2, transaction="orphan")
    return [regression("new"), regression("resolved"), regression("orphan")]


def test_nothing_is_written_when_the_service_refuses_the_occurrences(world: World) -> None:
    world.status = 500

    world.detect(three_regressions(world))

    assert world.journal == [("emit", [3])]
    assert (world.groups["resolved"].active, world.groups["orphan"].active) == (True, True)
    assert world.counters["statistical_detectors.breakpoint.not_emitted"] == 3
    assert world.counters["statistical_detectors.breakpoint.detected"] == 0


def test_the_versions_sent_are_ended_and_saved_after_the_emission(world: World) -> None:
    world.detect(three_regressions(world))

    assert world.journal == [
        ("emit", [3]),
        ("close", ["resolved"]),
        ("deactivate", ["orphan"]),
    ]
    assert (world.groups["resolved"].active, world.groups["orphan"].active) == (False, False)
    assert world.counters["statistical_detectors.breakpoint.not_emitted"] == 0
    assert world.counters["statistical_detectors.breakpoint.detected"] == 3


def test_a_regression_the_emitter_built_no_payload_for_keeps_its_version(world: World) -> None:
    """The project is unknown to the emitter: no payload, so its orphan is not deactivated."""
    regressions = three_regressions(world)
    regressions[2]["project"] = "2"

    world.detect(regressions)

    assert world.journal == [("emit", [2]), ("close", ["resolved"])]
    assert world.groups["orphan"].active
    assert world.counters["statistical_detectors.breakpoint.not_emitted"] == 1
    assert world.counters["statistical_detectors.breakpoint.detected"] == 2


def test_a_version_the_buffer_holds_back_is_still_ended_after_the_emission(world: World) -> None:
    """As upstream and this project's flow: the resolved version is closed, no new one saved."""
    world.groups["resolved"] = Group(id=1, transaction="resolved", date_regressed=NOW)
    world.issues[1] = RESOLVED

    world.detect([regression("resolved", hours_ago=1), regression("new")])

    assert world.journal == [("emit", [1]), ("close", ["resolved"])]
    assert world.counters["statistical_detectors.breakpoint.detected"] == 1


def test_a_young_orphan_is_neither_emitted_nor_deactivated(world: World) -> None:
    world.groups["orphan"] = Group(id=2, transaction="orphan", date_added=NOW - timedelta(hours=1))

    world.detect([regression("orphan")])

    assert world.journal == []
    assert world.groups["orphan"].active
