"""The wheel: built from the repository, installed alone in a fresh virtualenv, run from elsewhere.

The wheel holds the ``regression_tracking`` package only; a minimal install (no extras) brings no
dev tool and no optional backend, and its ``regression-tracking`` script runs a dry run against a
database built from upstream Sentry's DDL alone, from a directory that is not the repository.
The tests that build and install are marked postgresql, so the SQLite run does not pay for them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from tests.sentry_schema import scratch_sentry_database
from tests.test_sentry_database_mode import SentryDatabase, expected_result
from tests.utils import ROOT

# What the wheel is built from; everything else in the repository stays out of it.
WHEEL_SOURCES = ("pyproject.toml", "README.md", "regression_tracking")

DEV_TOOLS = {"pytest", "pytest-django", "ruff", "mypy", "playwright", "hypothesis", "factory-boy"}
OPTIONAL = {"statsd", "prometheus-client", "sentry-sdk", "gunicorn"}


def pip(*args: str) -> subprocess.CompletedProcess[str]:
    """This virtualenv's pip; ``--python`` points it at another environment."""
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )


def runtime_constraints(path: Path) -> Path:
    """requirements.txt's pins as a constraints file (no extras, no includes): the same versions."""
    pins = [
        line.split("[")[0] + line[line.index("]") + 1 :] if "[" in line else line
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line and line[0].isalpha()
    ]
    path.write_text("\n".join(pins) + "\n")
    return path


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built offline with the virtualenv's setuptools from a copy of its sources."""
    build = tmp_path_factory.mktemp("build")
    source = build / "source"
    source.mkdir()
    for name in WHEEL_SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, source / name)
    pip("wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(build), str(source))
    (built,) = build.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding the wheel and its runtime dependencies only; its bin dir."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    constraints = runtime_constraints(venv / "constraints.txt")
    pip("--python", str(venv / "bin" / "python"), "install", "--quiet", "-c", str(constraints),
        str(wheel))  # fmt: skip
    return venv / "bin"


@pytest.fixture(scope="module")
def installed_with_serve(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding the wheel with its serve extra (gunicorn), pinned; its bin dir."""
    venv = tmp_path_factory.mktemp("venv-serve")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    constraints = runtime_constraints(venv / "constraints.txt")
    pip("--python", str(venv / "bin" / "python"), "install", "--quiet", "-c", str(constraints),
        f"{wheel}[serve]")  # fmt: skip
    return venv / "bin"


@pytest.mark.postgresql
def test_wheel_holds_only_the_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read("regression_tracking-0.1.0.dist-info/entry_points.txt")
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"regression_tracking", "regression_tracking-0.1.0.dist-info"}
    assert "regression_tracking/migrations/0001_initial.py" in names
    assert "regression_tracking/settings.py" in names
    assert not any(
        name.startswith(("config/", "tests/", "benchmarks/", "scripts/")) for name in names
    )
    assert b"regression-tracking = regression_tracking.cli:main" in entry_points


@pytest.mark.postgresql
def test_minimal_install_brings_no_dev_tool_and_no_extra(installed: Path) -> None:
    listed = pip("--python", str(installed / "python"), "list", "--format", "json").stdout
    packages = {package["name"].lower() for package in json.loads(listed)}
    assert "regression-tracking" in packages
    assert {"django", "psycopg", "dj-database-url", "whitenoise"} <= packages
    assert packages & DEV_TOOLS == set()
    assert packages & OPTIONAL == set()


@pytest.mark.postgresql
def test_installed_script_dry_run_matches_an_sql_count(installed: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with scratch_sentry_database(connection, prefix="wheel") as connect_kwargs:
        database = SentryDatabase(connect_kwargs)
        database.fill()
        counts = database.expected_counts()
        eligible_ids = database.ids("orphaned AND old")
        rows = database.regression_rows()
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DJANGO_", "REGRESSION_TRACKING_", "SENTRY_", "PYTHON"))
        }
        result = subprocess.run(
            [str(installed / "regression-tracking"), "cleanup_orphaned_regressions", "--dry-run",
             "--format", "json"],
            cwd=elsewhere,
            env={**env, "DATABASE_URL": database.url, "REGRESSION_TRACKING_LOG_LEVEL": "WARNING"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        data: dict[str, Any] = json.loads(result.stdout)
        data.pop("elapsed_seconds")
        assert data == expected_result(
            counts, action="delete", dry_run=True, batch_size=1000, last_id=eligible_ids[-1]
        )
        assert database.regression_rows() == rows
    # Nothing was written where it ran (no db.sqlite3, no static files).
    assert list(elsewhere.iterdir()) == []


@pytest.mark.postgresql
def test_installed_script_says_a_configuration_error_in_one_line(
    installed: Path, tmp_path: Path
) -> None:
    result = subprocess.run(
        [str(installed / "regression-tracking"), "check"],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "REGRESSION_TRACKING_METRICS_BACKEND":
             "regression_tracking.metrics.StatsdBackend"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        "regression-tracking: configuration error: statsd is not installed: "
        "pip install 'regression-tracking[statsd]'\n",
    )


def test_pyproject_runtime_dependencies_are_pinned_in_requirements() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = (ROOT / "requirements.txt").read_text() + (
        ROOT / "requirements-dev.txt"
    ).read_text()
    pinned = {
        line.split("==")[0].split("[")[0].lower()
        for line in requirements.splitlines()
        if "==" in line and not line.startswith("#")
    }
    declared = [
        *project["dependencies"],
        *(
            dependency
            for extra in project["optional-dependencies"].values()
            for dependency in extra
        ),
    ]
    for dependency in declared:
        name = dependency.split("[")[0].split(">")[0].split("<")[0].split("=")[0].lower()
        assert name in pinned, dependency


@pytest.mark.postgresql
def test_the_image_build_steps_and_default_command_run_on_the_installed_wheel(
    installed: Path, tmp_path: Path
) -> None:
    """What the Dockerfile runs with the installed wheel, as its user would: not in the repo."""
    from tests.test_deploy_files import image_commands

    static_root = tmp_path / "static"
    env = {"PATH": os.environ["PATH"], "DJANGO_STATIC_ROOT": str(static_root)}
    for command in image_commands():
        result = subprocess.run(
            [str(installed / "regression-tracking"), *command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, (command, result.stderr)
    assert (static_root / "admin" / "css" / "base.css").is_file()
    assert "--dry-run" in result.stdout  # the default CMD: the command's help


def test_installed_script_without_a_database_url_says_so_and_creates_nothing(
    installed: Path, tmp_path: Path
) -> None:
    result = subprocess.run(
        [str(installed / "regression-tracking"), "cleanup_orphaned_regressions", "--dry-run"],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        "regression-tracking: configuration error: DATABASE_URL is not set: set it to the "
        "database to use, e.g. postgres://user@host:5432/sentry\n",
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ("", "DJANGO_SETTINGS_MODULE is set but empty: unset it or name a settings module"),
        ("no_such_settings", "DJANGO_SETTINGS_MODULE='no_such_settings' cannot be imported "
         "(no_such_settings not found)"),
    ],
)  # fmt: skip
def test_a_bad_settings_module_is_one_line(module: str, message: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "check"],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": module},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        f"manage.py: configuration error: {message}\n",
    )


@pytest.mark.postgresql
def test_the_image_serves_the_admin_from_the_installed_wheel_with_the_serve_extra(
    installed_with_serve: Path, tmp_path: Path
) -> None:
    """The image's build steps, then docs/deployment.md's command, on nothing but the wheel."""
    from tests.test_deploy_files import image_commands
    from tests.test_serve import PROXY_HEADERS, serve_environment, serving

    env = {
        "PATH": os.environ["PATH"],
        **serve_environment(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite3'}"),
    }
    *build_steps, _ = image_commands()
    for command in [*build_steps, ["check", "--deploy", "--fail-level", "WARNING"]]:
        result = subprocess.run(
            [str(installed_with_serve / "regression-tracking"), *command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert (result.returncode, result.stderr) == (0, ""), command
    with serving(tmp_path, env, gunicorn=installed_with_serve / "gunicorn") as server:
        login = server.request("GET", "/admin/login/", headers=PROXY_HEADERS)
        css = server.request("GET", "/static/admin/css/base.css", headers=PROXY_HEADERS)
    assert login.status == 200
    assert b'id="login-form"' in login.body
    assert css.status == 200
    assert css.headers["Content-Type"] == 'text/css; charset="utf-8"'
    assert css.body == (tmp_path / "static" / "admin" / "css" / "base.css").read_bytes()
    listed = pip("--python", str(installed_with_serve / "python"), "list", "--format", "json")
    packages = {package["name"].lower() for package in json.loads(listed.stdout)}
    assert "gunicorn" in packages
    assert packages & DEV_TOOLS == set()
