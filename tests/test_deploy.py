"""The admin deployed with DEBUG off: secret key, hosts, static files, error logging, error pages.

Each test runs the real thing in a subprocess with the environment an operator would set.
"""

from __future__ import annotations

import subprocess
import sys

from tests.test_settings import clean_environment
from tests.utils import ROOT

PASSWORD = "s3cr3t-pw"
DATABASE_URL_WITH_PASSWORD = f"postgres://sentry:{PASSWORD}@db.internal:5432/sentry"

# The production environment README's "Deploying the admin" documents.
PRODUCTION_ENVIRONMENT = {
    "DJANGO_DEBUG": "off",
    "DJANGO_SECRET_KEY": "k7$Gq2!vLr9#Xw4@Zp8&Mn3^Bt6*Hc1(Jd5)Fs0-Yu7+Ea2=Ro9",
    "DJANGO_ALLOWED_HOSTS": "regressions.example.com",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://regressions.example.com",
    "DJANGO_HTTPS": "on",
    "DJANGO_HSTS_SECONDS": "31536000",
    "DJANGO_HSTS_INCLUDE_SUBDOMAINS": "on",
    "DJANGO_HSTS_PRELOAD": "on",
}


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=clean_environment(**{"DJANGO_SETTINGS_MODULE": "config.settings", **env}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=clean_environment(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class TestSecretKey:
    def test_web_app_refuses_to_start_without_it_when_debug_is_off(self) -> None:
        result = run_python("import config.wsgi", DJANGO_DEBUG="off")
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr == (
            "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off: the web app will not start "
            "with the development key\n"
        )

    def test_package_web_app_refuses_too(self) -> None:
        result = run_python(
            "import regression_tracking.wsgi", DJANGO_SETTINGS_MODULE="regression_tracking.settings"
        )
        assert result.returncode == 1
        assert result.stderr.startswith("DJANGO_SECRET_KEY must be set")

    def test_runserver_refuses_too_and_exits(self, tmp_path) -> None:
        # With the autoreloader the app is loaded in a thread: the process must still end.
        result = run_manage(
            "runserver", "127.0.0.1:0", DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}"
        )
        assert result.returncode == 1
        assert result.stderr.splitlines()[-1].startswith("DJANGO_SECRET_KEY must be set")

    def test_web_app_starts_with_it(self) -> None:
        result = run_python(
            "import config.wsgi; print(type(config.wsgi.application).__name__)",
            DJANGO_SECRET_KEY=PRODUCTION_ENVIRONMENT["DJANGO_SECRET_KEY"],
        )
        assert (result.returncode, result.stdout) == (0, "WSGIHandler\n")

    def test_web_app_starts_without_it_in_debug(self) -> None:
        result = run_python("import config.wsgi", DJANGO_DEBUG="1")
        assert result.returncode == 0, result.stderr

    def test_commands_keep_working_without_it(self, tmp_path) -> None:
        result = run_manage(
            "cleanup_orphaned_regressions",
            "--help",
            DJANGO_DEBUG="off",
            DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        )
        assert result.returncode == 0, result.stderr
        assert "--dry-run" in result.stdout


def test_check_deploy_is_clean_with_the_documented_production_environment(tmp_path) -> None:
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        **PRODUCTION_ENVIRONMENT,
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "System check identified no issues (0 silenced).\n",
        "",
    )


def test_check_deploy_warns_without_it(tmp_path) -> None:
    result = run_manage(
        "check", "--deploy", "--fail-level", "WARNING", DATABASE_URL=f"sqlite:///{tmp_path}/x"
    )
    assert result.returncode == 1
    assert "security.W009" in result.stderr  # the development secret key


def test_admin_is_styled_with_debug_off(tmp_path) -> None:
    static_root = tmp_path / "static"
    collected = run_manage(
        "collectstatic", "--no-input", "-v", "0", DJANGO_STATIC_ROOT=str(static_root)
    )
    assert collected.returncode == 0, collected.stderr
    assert (static_root / "admin" / "css" / "base.css").is_file()
    served = run_python(
        "import django; django.setup()\n"
        "from django.test import Client\n"
        "response = Client().get('/static/admin/css/base.css',\n"
        "    HTTP_HOST='regressions.example.com', HTTP_X_FORWARDED_PROTO='https')\n"
        "body = b''.join(response.streaming_content)\n"
        "print(response.status_code, response['Content-Type'], b'--body-bg' in body)\n",
        DJANGO_STATIC_ROOT=str(static_root),
        **PRODUCTION_ENVIRONMENT,
    )
    assert served.returncode == 0, served.stderr
    assert served.stdout == '200 text/css; charset="utf-8" True\n'


FAILING_REQUEST = (
    "import django; django.setup()\n"
    "from django.test import Client, override_settings\n"
    "with override_settings(ROOT_URLCONF='tests.urls_errors'):\n"
    "    response = Client(raise_request_exception=False).get(\n"
    "        '/boom/', HTTP_HOST='localhost', DATABASE_URL={url!r}, SENTRY_DSN={dsn!r})\n"
    "print(response.status_code)\n"
    "open({page!r}, 'wb').write(response.content)\n"
)


def test_server_errors_are_logged_with_debug_off(tmp_path) -> None:
    page = tmp_path / "page.html"
    result = run_python(
        FAILING_REQUEST.format(url="", dsn="", page=str(page)),
        DJANGO_SECRET_KEY=PRODUCTION_ENVIRONMENT["DJANGO_SECRET_KEY"],
    )
    assert result.stdout == "500\n"
    assert "ERROR django.request: Internal Server Error: /boom/" in result.stderr
    assert "RuntimeError: the view failed on purpose" in result.stderr
    assert b"Server Error (500)" in page.read_bytes()


def test_debug_error_page_never_shows_the_database_password(tmp_path) -> None:
    page = tmp_path / "page.html"
    dsn = "https://publickey123@o1.ingest.sentry.io/1"
    result = run_python(
        FAILING_REQUEST.format(url=DATABASE_URL_WITH_PASSWORD, dsn=dsn, page=str(page)),
        DJANGO_DEBUG="1",
        DATABASE_URL=DATABASE_URL_WITH_PASSWORD,
    )
    assert result.stdout == "500\n", result.stderr
    html = page.read_text()
    assert "RuntimeError" in html  # the technical page, with settings and request META
    assert "DATABASES" in html
    assert PASSWORD not in html
    assert DATABASE_URL_WITH_PASSWORD not in html
    assert "publickey123" not in html
