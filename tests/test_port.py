"""``python -m port``: the port into a Sentry checkout, on small Sentry-shaped sources.

The sources in ``tests/port_sources`` are written for these tests: the function names, call
shapes and statement order of upstream's, nothing more. ``expected/`` holds what the port makes of
them. No database: the tool reads and writes files only.
"""

from __future__ import annotations

import ast
import difflib
import io
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from port.cli import main
from port.sites import SITES, TEMPLATES

SOURCES = Path(__file__).parent / "port_sources"
DETECTOR = "src/sentry/statistical_detectors/detector.py"
TASKS = "src/sentry/tasks/statistical_detectors.py"
SERVER = "src/sentry/conf/server.py"
DEFAULTS = "src/sentry/options/defaults.py"
ORPHANS = "src/sentry/statistical_detectors/orphans.py"
TEST_ORPHANS = "tests/sentry/statistical_detectors/test_orphans.py"
TEST_TASKS = "tests/sentry/tasks/test_statistical_detectors_orphans.py"
INPUTS = {
    DETECTOR: "detector.py.txt",
    TASKS: "tasks.py.txt",
    SERVER: "server.py.txt",
    DEFAULTS: "defaults.py.txt",
}
NEW_FILES = {
    ORPHANS: "orphans.py.in",
    TEST_ORPHANS: "test_orphans.py.in",
    TEST_TASKS: "test_statistical_detectors_orphans.py.in",
}

CHECK_OUTPUT = f"""\
{ORPHANS}:1  orphans  new file (absent, will be written)
{DETECTOR}:56  site 1  RegressionDetector.get_regression_versions()
{DETECTOR}:70  site 1  capture_message("Missing issue group for regression issue") followed by \
continue in the active-regressions loop
{DETECTOR}:75  site 1  the resolved-issue yield: group.version, group.date_regressed, detected
{DETECTOR}:65  site 1  the batch loop around it (orphans are deactivated per batch)
{DETECTOR}:76  site 1  the batch's close: RegressionGroup.objects.bulk_update(closing, ["active"])
{DETECTOR}:43  site 2  RegressionDetector._filter_escalating_groups()
{DETECTOR}:50  site 2  capture_message("Missing issue group for regression issue") followed by \
continue in its loop over the bundles
{DETECTOR}:38  site 2  RegressionDetector.redirect_escalations: the loop over \
cls._filter_escalating_groups(...)
{TASKS}:37  site 3  _detect_function_change_points: regressions = \
FunctionRegressionDetector.save_regressions_with_versions(regressions) (save, then emit)
{TASKS}:39  site 3  _detect_function_change_points: the loop over chunked(regressions, 50) \
calling emit_function_regression_issue()
{TASKS}:45  site 3  emit_function_regression_issue()
{TASKS}:50  site 3  emit_function_regression_issue: payloads.append(...) per regression
{TASKS}:54  site 3  emit_function_regression_issue: answer.status != 200
{TASKS}:23  daily task  run_detection() with \
@instrumented_task(name="sentry.tasks.statistical_detectors.run_detection")
{SERVER}:10  schedule  TASKWORKER_REGION_SCHEDULES['statistical-detectors-detect-regressions'] \
-> performance:sentry.tasks.statistical_detectors.run_detection
{DEFAULTS}:4  option  register('statistical_detectors.enable', ...)
{TEST_ORPHANS}:1  tests  new file (absent, will be written)
{TEST_TASKS}:1  tests  new file (absent, will be written)
"""


def run(*args: str | Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([str(arg) for arg in args], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A Sentry-shaped checkout: the four files the port rewrites and the two test folders."""
    root = tmp_path / "sentry"
    for path, source in INPUTS.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SOURCES / source, root / path)
    (root / "tests/sentry/statistical_detectors").mkdir(parents=True)
    (root / "tests/sentry/tasks").mkdir(parents=True)
    return root


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): path.read_text()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def edit(path: str, old: str, new: str, *, count: int = 1) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        text = (root / path).read_text()
        assert text.count(old) == count, (path, old)
        (root / path).write_text(text.replace(old, new))

    return apply


def move_filter_to_another_class(root: Path) -> None:
    """``_filter_escalating_groups`` cut from RegressionDetector into a class of its own."""
    text = (root / DETECTOR).read_text()
    start = text.index("    @classmethod\n    def _filter_escalating_groups(")
    end = text.index("    @classmethod\n    def get_regression_versions(")
    method = text[start:end]
    (root / DETECTOR).write_text(
        text[:start] + text[end:] + "\n\nclass EscalationFilter:\n" + method.rstrip() + "\n"
    )


class TestCheck:
    def test_finds_every_anchor_and_writes_nothing(self, checkout: Path) -> None:
        before = snapshot(checkout)

        assert run(checkout, "--check") == (0, CHECK_OUTPUT, "")
        assert snapshot(checkout) == before

    def test_after_the_port_every_site_reports_ported(self, checkout: Path) -> None:
        run(checkout)

        code, out, err = run(checkout, "--check")

        assert (code, err) == (0, "")
        assert [line.split("  ")[1] for line in out.splitlines()] == [s.site for s in SITES]
        assert all("already ported" in line for line in out.splitlines()), out


class TestApply:
    def test_rewrites_each_file_to_the_expected_source(self, checkout: Path) -> None:
        code, out, err = run(checkout)

        assert (code, err) == (0, "")
        assert out == "".join(f"port: wrote {path}\n" for path in sorted([*INPUTS, *NEW_FILES]))
        for path, source in INPUTS.items():
            assert (checkout / path).read_text() == (SOURCES / "expected" / source).read_text()
        for path, template in NEW_FILES.items():
            assert (checkout / path).read_text() == (TEMPLATES / template).read_text()

    def test_every_file_written_compiles(self, checkout: Path) -> None:
        run(checkout)

        for path in [*INPUTS, *NEW_FILES]:
            compile((checkout / path).read_text(), path, "exec")

    def test_a_second_run_changes_nothing(self, checkout: Path) -> None:
        run(checkout)
        after_first = snapshot(checkout)

        assert run(checkout) == (0, "port: already ported, nothing to change\n", "")
        assert snapshot(checkout) == after_first

    def test_no_line_written_ends_in_whitespace_or_passes_100_characters(
        self, checkout: Path
    ) -> None:
        before = snapshot(checkout)
        run(checkout)

        for path, text in snapshot(checkout).items():
            new_lines = set(text.splitlines()) - set(before.get(path, "").splitlines())
            assert [line for line in new_lines if line != line.rstrip()] == [], path
            assert [line for line in new_lines if len(line) > 100] == [], path

    def test_long_names_in_the_flow_are_laid_out_within_100_characters(
        self, checkout: Path
    ) -> None:
        """Upstream's loop binds ``regression_chunk``: the decision's call is split over lines."""
        text = (checkout / TASKS).read_text()
        (checkout / TASKS).write_text(
            text.replace("for chunk in", "for regression_chunk in")
            .replace("len(chunk)", "len(regression_chunk)")
            .replace("projects_by_id, chunk, start", "projects_by_id, regression_chunk, start")
        )

        assert run(checkout)[0] == 0

        ported = (checkout / TASKS).read_text()
        compile(ported, TASKS, "exec")
        assert [line for line in ported.splitlines() if len(line) > 100] == []
        assert (
            "        due, held, pending = _decide_regression_versions(\n"
            "            FunctionRegressionDetector, regression_chunk\n"
            "        )\n"
        ) in ported

    def test_the_detector_never_calls_now_on_datetime_timezone(self, checkout: Path) -> None:
        """detector.py imports ``timezone`` from ``datetime``: ``timezone.now()`` would raise."""
        run(checkout)

        tree = ast.parse((checkout / DETECTOR).read_text())
        calls = [
            ast.unparse(node.func)
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        ]
        assert "timezone.now" not in calls
        assert (
            "from datetime import datetime, timedelta, timezone"
            in (checkout / DETECTOR).read_text()
        )

    def test_the_orphans_module_takes_now_from_django(self) -> None:
        text = (TEMPLATES / "orphans.py.in").read_text()

        assert "from django.utils import timezone as django_timezone" in text
        assert "django_timezone.now()" in text
        assert "from datetime import datetime, timedelta\n" in text


class TestDryRun:
    def test_prints_the_unified_diff_and_writes_nothing(self, checkout: Path) -> None:
        before = snapshot(checkout)

        code, out, err = run(checkout, "--dry-run")

        expected: list[str] = []
        for path in sorted([*INPUTS, *NEW_FILES]):
            if path in INPUTS:
                old = (SOURCES / INPUTS[path]).read_text()
                new = (SOURCES / "expected" / INPUTS[path]).read_text()
                names = (f"a/{path}", f"b/{path}")
            else:
                old, new = "", (TEMPLATES / NEW_FILES[path]).read_text()
                names = ("/dev/null", f"b/{path}")
            expected.extend(
                difflib.unified_diff(
                    old.splitlines(keepends=True),
                    new.splitlines(keepends=True),
                    fromfile=names[0],
                    tofile=names[1],
                )
            )
        assert (code, out, err) == (0, "".join(expected), "")
        assert snapshot(checkout) == before


MESSAGE = '"Missing issue group for regression issue"'


@pytest.mark.parametrize(
    ("drift", "missing"),
    [
        pytest.param(
            edit(DETECTOR, MESSAGE, '"Missing issue group"', count=2),
            [
                f"{DETECTOR}  site 1  NOT FOUND: one capture_message({MESSAGE}) followed by "
                "continue in RegressionDetector.get_regression_versions (found none)",
                f"{DETECTOR}  site 2  NOT FOUND: one capture_message({MESSAGE}) followed by "
                "continue in RegressionDetector._filter_escalating_groups (found none)",
            ],
            id="message text changed",
        ),
        pytest.param(
            edit(DETECTOR, "sentry_sdk.capture_message(", "sentry_sdk.capture_event(", count=2),
            [
                f"{DETECTOR}  site 1  NOT FOUND: one capture_message({MESSAGE}) followed by "
                "continue in RegressionDetector.get_regression_versions (found none)",
                f"{DETECTOR}  site 2  NOT FOUND: one capture_message({MESSAGE}) followed by "
                "continue in RegressionDetector._filter_escalating_groups (found none)",
            ],
            id="message call renamed",
        ),
        pytest.param(
            edit(DETECTOR, "def get_regression_versions(", "def get_versions("),
            [
                f"{DETECTOR}  site 1  NOT FOUND: a method "
                "RegressionDetector.get_regression_versions()"
            ],
            id="anchor renamed",
        ),
        pytest.param(
            move_filter_to_another_class,
            [
                f"{DETECTOR}  site 2  NOT FOUND: a method "
                "RegressionDetector._filter_escalating_groups()"
            ],
            id="function moved out of the class",
        ),
        pytest.param(
            edit(
                TASKS,
                "    regressions = FunctionRegressionDetector.save_regressions_with_versions("
                "regressions)\n",
                "",
            ),
            [
                f"{TASKS}  site 3  NOT FOUND: regressions = "
                "<Detector>.save_regressions_with_versions(regressions) in "
                "_detect_function_change_points"
            ],
            id="save statement gone",
        ),
        pytest.param(
            edit(TASKS, "    if answer.status != 200:", "    if answer.status >= 400:"),
            [
                f"{TASKS}  site 3  NOT FOUND: if <response>.status != 200: ... in "
                "emit_function_regression_issue"
            ],
            id="status check changed",
        ),
        pytest.param(
            edit(
                SERVER,
                '"statistical-detectors-detect-regressions"',
                '"statistical-detectors-run"',
            ),
            [
                f"{SERVER}  schedule  NOT FOUND: TASKWORKER_REGION_SCHEDULES"
                "['statistical-detectors-detect-regressions'] = {...}"
            ],
            id="schedule entry renamed",
        ),
        pytest.param(
            edit(SERVER, "TASKWORKER_REGION_SCHEDULES:", "CELERYBEAT_SCHEDULE_REGION:"),
            [
                f"{SERVER}  schedule  NOT FOUND: TASKWORKER_REGION_SCHEDULES = {{...}} at the top "
                "level of the settings"
            ],
            id="schedules still Celery's",
        ),
        pytest.param(
            lambda root: (root / SERVER).unlink(),
            [f"{SERVER}  schedule  NOT FOUND: the file {SERVER}"],
            id="file missing",
        ),
        pytest.param(
            lambda root: shutil.rmtree(root / "tests/sentry/tasks"),
            [f"{TEST_TASKS}  tests  NOT FOUND: the folder tests/sentry/tasks/"],
            id="test folder missing",
        ),
        pytest.param(
            lambda root: (root / ORPHANS).write_text('"""Another module."""\n'),
            [
                f"{ORPHANS}  orphans  NOT FOUND: no such file, or the port's own version of it "
                "(it differs)"
            ],
            id="orphans module differs",
        ),
    ],
)
class TestDrift:
    def test_check_names_the_site_and_what_it_looked_for(
        self, checkout: Path, drift: Callable[[Path], None], missing: list[str]
    ) -> None:
        drift(checkout)
        before = snapshot(checkout)

        code, out, err = run(checkout, "--check")

        assert code == 1
        assert [line for line in out.splitlines() if "NOT FOUND" in line] == missing
        sites = ", ".join(sorted({line.split("  ")[1] for line in missing}))
        assert err == f"port: {len(missing)} anchor(s) not found ({sites}); nothing written\n"
        assert snapshot(checkout) == before

    def test_apply_refuses_and_writes_nothing(
        self, checkout: Path, drift: Callable[[Path], None], missing: list[str]
    ) -> None:
        drift(checkout)
        before = snapshot(checkout)

        code, out, err = run(checkout)

        assert code == 1
        assert [line for line in out.splitlines() if "NOT FOUND" in line] == missing
        assert err.endswith("; nothing written\n")
        assert snapshot(checkout) == before


def test_the_sources_and_their_expected_ports_compile() -> None:
    for path in [*SOURCES.glob("*.txt"), *SOURCES.glob("expected/*.txt"), *TEMPLATES.glob("*.in")]:
        compile(path.read_text(), str(path), "exec")


def test_a_checkout_that_is_not_a_folder_is_refused(tmp_path: Path) -> None:
    assert run(tmp_path / "nowhere") == (2, "", f"port: {tmp_path / 'nowhere'} is not a folder\n")
