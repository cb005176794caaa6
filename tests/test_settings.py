"""Settings from the environment: every bad value is one line on stderr and exit 1, no traceback.

Each case runs the real entry points in a subprocess: ``manage.py`` and the console script's
``main`` (``python -m regression_tracking.cli``, from another directory, as the installed
``regression-tracking`` runs; tests/test_packaging.py runs the installed script itself).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.utils import ROOT, settings_in_subprocess

SECRET = "s3cr3t-pw"

# (environment, the variable the one line must name)
BAD_CONFIGURATIONS = {
    "mysql_url": ({"DATABASE_URL": f"mysql://root:{SECRET}@db/sentry"}, "DATABASE_URL"),
    "mongodb_url": ({"DATABASE_URL": f"mongodb://root:{SECRET}@db/sentry"}, "DATABASE_URL"),
    "garbage_url": ({"DATABASE_URL": "garbage"}, "DATABASE_URL"),
    "non_numeric_port": (
        {"DATABASE_URL": f"postgres://sentry:{SECRET}@db:fivefour/sentry"},
        "DATABASE_URL",
    ),
    "out_of_range_port": (
        {"DATABASE_URL": f"postgres://sentry:{SECRET}@db:99999/sentry"},
        "DATABASE_URL",
    ),
    "url_without_database": ({"DATABASE_URL": "postgres://db:5432"}, "DATABASE_URL"),
    "malformed_dsn": ({"SENTRY_DSN": "not a dsn"}, "SENTRY_DSN"),
    "dsn_without_key": ({"SENTRY_DSN": "https://o1.ingest.sentry.io/1"}, "SENTRY_DSN"),
    "dsn_bad_port": ({"SENTRY_DSN": "https://key@sentry.example.com:x/1"}, "SENTRY_DSN"),
    "unknown_log_level": ({"REGRESSION_TRACKING_LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    "unknown_django_log_level": ({"DJANGO_LOG_LEVEL": "chatty"}, "DJANGO_LOG_LEVEL"),
    "unknown_log_format": ({"REGRESSION_TRACKING_LOG_FORMAT": "xml"}, "LOG_FORMAT"),
    "backend_not_importable": (
        {"REGRESSION_TRACKING_METRICS_BACKEND": "regression_tracking.metrics.NoSuchBackend"},
        "METRICS_BACKEND",
    ),
    "backend_not_a_path": ({"REGRESSION_TRACKING_METRICS_BACKEND": "statsd"}, "METRICS_BACKEND"),
    "backend_not_a_backend": (
        {"REGRESSION_TRACKING_METRICS_BACKEND": "collections.OrderedDict"},
        "METRICS_BACKEND",
    ),
    "statsd_port_not_numeric": ({"REGRESSION_TRACKING_STATSD_PORT": "eighty"}, "STATSD_PORT"),
    "statsd_port_unicode_digits": ({"REGRESSION_TRACKING_STATSD_PORT": "٨١٢٥"}, "STATSD_PORT"),
    "statsd_port_out_of_range": ({"REGRESSION_TRACKING_STATSD_PORT": "70000"}, "STATSD_PORT"),
    "debug_not_a_boolean": ({"DJANGO_DEBUG": "maybe"}, "DJANGO_DEBUG"),
    "https_not_a_boolean": ({"DJANGO_HTTPS": "sometimes"}, "DJANGO_HTTPS"),
    "hsts_not_a_number": ({"DJANGO_HSTS_SECONDS": "a year"}, "DJANGO_HSTS_SECONDS"),
}

ENTRY_POINTS = {
    "manage.py": ([sys.executable, str(ROOT / "manage.py")], "manage.py"),
    "console_script": ([sys.executable, "-m", "regression_tracking.cli"], "cli.py"),
}


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without the project's variables, plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("REGRESSION_TRACKING_", "SENTRY_", "DJANGO_"))
    }
    env["PYTHONPATH"] = str(ROOT)
    return {**env, **extra}


def run_entry_point(
    entry_point: str, *args: str, cwd: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    command, _ = ENTRY_POINTS[entry_point]
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        env=clean_environment(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
@pytest.mark.parametrize("case", BAD_CONFIGURATIONS)
def test_bad_configuration_is_one_line_and_exit_1(entry_point: str, case: str, tmp_path) -> None:
    env, variable = BAD_CONFIGURATIONS[case]
    result = run_entry_point(
        entry_point, "cleanup_orphaned_regressions", "--dry-run", cwd=tmp_path, **env
    )
    _, program = ENTRY_POINTS[entry_point]
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{program}: configuration error: ")
    assert variable in lines[0]
    assert SECRET not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_good_configuration_runs_the_command(entry_point: str, tmp_path) -> None:
    result = run_entry_point(
        entry_point,
        "check",
        cwd=tmp_path,
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        REGRESSION_TRACKING_METRICS_BACKEND="regression_tracking.metrics.StatsdBackend",
        REGRESSION_TRACKING_STATSD_PORT="9125",
        SENTRY_DSN="",
        DJANGO_DEBUG="off",
    )
    assert (result.returncode, result.stdout) == (
        0,
        "System check identified no issues (0 silenced).\n",
    )


def test_error_names_the_scheme_and_what_is_accepted(tmp_path) -> None:
    result = run_entry_point(
        "manage.py", "check", cwd=tmp_path, DATABASE_URL=f"mysql://root:{SECRET}@db/sentry"
    )
    assert result.stderr == (
        "manage.py: configuration error: DATABASE_URL has an unsupported scheme mysql://: "
        "use postgres:// or sqlite:///\n"
    )


def test_statsd_backend_without_its_extra_says_which_extra(tmp_path) -> None:
    # A directory that shadows the statsd package with one that cannot be imported.
    shadow = tmp_path / "shadow"
    (shadow / "statsd").mkdir(parents=True)
    (shadow / "statsd" / "__init__.py").write_text("raise ImportError('not installed')\n")
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "check"],
        cwd=tmp_path,
        env=clean_environment(
            PYTHONPATH=f"{shadow}{os.pathsep}{ROOT}",
            REGRESSION_TRACKING_METRICS_BACKEND="regression_tracking.metrics.StatsdBackend",
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr) == (
        1,
        "manage.py: configuration error: statsd is not installed: "
        "pip install 'regression-tracking[statsd]'\n",
    )


def _print_setting(expression: str, **env: str) -> str:
    result = settings_in_subprocess(f"from django.conf import settings\nprint({expression})", **env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", "on", " On "])
def test_debug_accepts_the_usual_true_words(value: str) -> None:
    assert _print_setting("settings.DEBUG", DJANGO_DEBUG=value) == "True"


@pytest.mark.parametrize("value", ["0", "false", "no", "off", "OFF", ""])
def test_debug_accepts_the_usual_false_words(value: str) -> None:
    assert _print_setting("settings.DEBUG", DJANGO_DEBUG=value) == "False"


def test_debug_is_off_by_default() -> None:
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_DEBUG"}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); "
         "from django.conf import settings; print(settings.DEBUG)"],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert result.stdout == "False\n"


def test_allowed_hosts_and_csrf_origins_come_from_the_environment() -> None:
    printed = _print_setting(
        "settings.ALLOWED_HOSTS, settings.CSRF_TRUSTED_ORIGINS",
        DJANGO_ALLOWED_HOSTS="regressions.example.com, .internal.example.com,",
        DJANGO_CSRF_TRUSTED_ORIGINS="https://regressions.example.com",
    )
    assert printed == (
        "['regressions.example.com', '.internal.example.com'] ['https://regressions.example.com']"
    )


def test_allowed_hosts_default_to_the_local_machine() -> None:
    assert _print_setting("settings.ALLOWED_HOSTS") == "['localhost', '127.0.0.1', '[::1]']"


def test_package_settings_default_to_sqlite_in_the_current_directory(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); "
         "from django.conf import settings; print(settings.DATABASES['default']['NAME'])"],
        cwd=tmp_path,
        env=clean_environment(
            DJANGO_SETTINGS_MODULE="regression_tracking.settings", DATABASE_URL=""
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert result.stdout == f"{tmp_path / 'db.sqlite3'}\n"


def test_repository_settings_default_to_sqlite_in_the_project_directory(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); "
         "from django.conf import settings; print(settings.DATABASES['default']['NAME'])"],
        cwd=tmp_path,
        env=clean_environment(DJANGO_SETTINGS_MODULE="config.settings", DATABASE_URL=""),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert result.stdout == f"{ROOT / 'db.sqlite3'}\n"
