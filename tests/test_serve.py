"""The admin served by gunicorn with the documented command and environment (docs/deployment.md).

Each test runs the real server in a subprocess on 127.0.0.1 (a port the kernel picks), from a
directory outside the repository, with DEBUG off and the production environment, and talks HTTP to
it as the proxy in front of it would: the allowed host, ``X-Forwarded-Proto: https``.
"""

from __future__ import annotations

import http.client
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.test_deploy import PRODUCTION_ENVIRONMENT
from tests.test_settings import ENTRY_POINTS, clean_environment, run_entry_point
from tests.utils import ROOT, database_url

DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"

# The command docs/deployment.md documents; the tests replace only the address it binds.
SERVE_COMMAND = [
    "gunicorn",
    "regression_tracking.wsgi",
    "--bind",
    "0.0.0.0:8000",
    "--workers",
    "2",
    "--preload",
    "--no-control-socket",
    "--access-logfile",
    "-",
]
GUNICORN = Path(sys.executable).with_name("gunicorn")
HOST = PRODUCTION_ENVIRONMENT["DJANGO_ALLOWED_HOSTS"]
ORIGIN = f"https://{HOST}"
PROXY_HEADERS = {"Host": HOST, "X-Forwarded-Proto": "https"}
# How long the server may take to listen, and to stop after SIGTERM.
START_SECONDS = 30
STOP_SECONDS = 15
USERNAME = "operator"
PASSWORD = "a-long-operator-password-9"


def documented_commands() -> list[list[str]]:
    """The shell commands of docs/deployment.md's ``sh`` blocks, continuation lines joined."""
    blocks = re.findall(r"^```sh\n(.*?)^```", DEPLOYMENT_DOC.read_text(), re.MULTILINE | re.DOTALL)
    commands = []
    for block in blocks:
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            words = shlex.split(line)
            if words and "=" not in words[0]:
                commands.append(words)
    return commands


def documented_environment() -> dict[str, str]:
    """The ``NAME=value`` lines of docs/deployment.md's ``sh`` blocks."""
    blocks = re.findall(r"^```sh\n(.*?)^```", DEPLOYMENT_DOC.read_text(), re.MULTILINE | re.DOTALL)
    return dict(
        line.split("=", 1)
        for block in blocks
        for line in block.splitlines()
        if re.match(r"^[A-Z_]+=", line)
    )


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def cookies(self) -> SimpleCookie:
        cookies: SimpleCookie = SimpleCookie()
        for value in self.headers.get_all("Set-Cookie") or []:
            cookies.load(value)
        return cookies


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    stdout: Path
    stderr: Path

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> Response:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return Response(response.status, response.headers, response.read())
        finally:
            connection.close()


def serve_environment(tmp_path: Path, url: str) -> dict[str, str]:
    """The documented environment: production settings, the static root, the database."""
    return {
        **PRODUCTION_ENVIRONMENT,
        "DJANGO_STATIC_ROOT": str(tmp_path / "static"),
        "DATABASE_URL": url,
        "REGRESSION_TRACKING_LOG_LEVEL": "WARNING",
    }


def server_command(gunicorn: Path = GUNICORN) -> list[str]:
    command = [str(gunicorn), *SERVE_COMMAND[1:]]
    command[command.index("--bind") + 1] = "127.0.0.1:0"
    return command


def start(command: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start gunicorn in its own process group, its output in files (no pipe to fill up)."""
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=(cwd / "gunicorn.out").open("wb"),
        stderr=(cwd / "gunicorn.err").open("wb"),
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM; if gunicorn has not exited in time, its whole process group (its workers) killed.

    The group is killed before the master is reaped, so its id cannot have been reused.
    """
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    return process.wait(STOP_SECONDS)


@contextmanager
def serving(tmp_path: Path, env: dict[str, str], *, gunicorn: Path = GUNICORN) -> Iterator[Server]:
    """gunicorn running the documented command with exactly ``env``; stopped on exit, whatever
    the test did."""
    cwd = tmp_path / "run"
    cwd.mkdir()
    process = start(server_command(gunicorn), cwd=cwd, env=env)
    server = Server(process, 0, cwd / "gunicorn.out", cwd / "gunicorn.err")
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            listening = re.search(
                rb"Listening at: http://127\.0\.0\.1:(\d+)", server.stderr.read_bytes()
            )
            if listening:
                server.port = int(listening.group(1))
                break
            assert process.poll() is None, server.stderr.read_text()
            assert time.monotonic() < deadline, server.stderr.read_text()
            time.sleep(0.05)
        yield server
    finally:
        stop(process)


def collect_static(tmp_path: Path) -> Path:
    static_root = tmp_path / "static"
    result = run_entry_point(
        "console_script",
        "collectstatic",
        "--no-input",
        "-v",
        "0",
        cwd=tmp_path,
        DJANGO_STATIC_ROOT=str(static_root),
    )
    assert result.returncode == 0, result.stderr
    return static_root


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db.sqlite3'}"


@pytest.fixture
def server(tmp_path: Path, sqlite_url: str) -> Iterator[Server]:
    collect_static(tmp_path)
    with serving(tmp_path, clean_environment(**serve_environment(tmp_path, sqlite_url))) as running:
        yield running


def test_docs_give_the_tested_command_for_the_package_and_the_image() -> None:
    commands = documented_commands()
    assert SERVE_COMMAND in commands
    (docker,) = [command for command in commands if command[:2] == ["docker", "run"]]
    entrypoint = docker.index("--entrypoint")
    assert docker[entrypoint + 1] == "gunicorn"
    image = docker.index("regression-tracking")
    assert docker[image + 1 :] == SERVE_COMMAND[1:]
    assert "8000:8000" in docker


def test_docs_give_the_tested_environment() -> None:
    documented = documented_environment()
    served = serve_environment(Path("/static"), "postgres://")
    served.pop("REGRESSION_TRACKING_LOG_LEVEL")
    assert documented.keys() == served.keys()
    for name in documented.keys() - {"DATABASE_URL", "DJANGO_SECRET_KEY", "DJANGO_STATIC_ROOT"}:
        assert documented[name] == served[name], name
    # The image's static root is the documented one.
    assert f"DJANGO_STATIC_ROOT={documented['DJANGO_STATIC_ROOT']}" in (
        ROOT / "Dockerfile"
    ).read_text().replace(" ", "")


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_check_deploy_is_clean_under_the_serving_environment(
    entry_point: str, tmp_path: Path, sqlite_url: str
) -> None:
    collect_static(tmp_path)
    result = run_entry_point(
        entry_point,
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        cwd=tmp_path,
        **serve_environment(tmp_path, sqlite_url),
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "System check identified no issues (0 silenced).\n",
        "",
    )


def test_login_page_is_served(server: Server) -> None:
    response = server.request("GET", "/admin/login/", headers=PROXY_HEADERS)
    assert response.status == 200, response.body
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    html = response.body.decode()
    assert '<form action="/admin/login/" method="post" id="login-form">' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert 'name="username"' in html
    assert 'name="password"' in html
    # Served as over HTTPS: HSTS, no framing, a secure CSRF cookie.
    assert response.headers["Strict-Transport-Security"] == (
        "max-age=31536000; includeSubDomains; preload"
    )
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.cookies()["csrftoken"]["secure"] is True
    # The access log line on stdout.
    deadline = time.monotonic() + 5
    while b'"GET /admin/login/ HTTP/1.1" 200' not in server.stdout.read_bytes():
        assert time.monotonic() < deadline, server.stdout.read_text()
        time.sleep(0.05)


def test_static_file_is_served(server: Server, tmp_path: Path) -> None:
    response = server.request("GET", "/static/admin/css/base.css", headers=PROXY_HEADERS)
    assert response.status == 200
    assert response.headers["Content-Type"] == 'text/css; charset="utf-8"'
    assert response.body == (tmp_path / "static" / "admin" / "css" / "base.css").read_bytes()
    assert b"--body-bg" in response.body


def test_the_login_page_links_static_files_the_server_has(server: Server) -> None:
    html = server.request("GET", "/admin/login/", headers=PROXY_HEADERS).body.decode()
    stylesheets = re.findall(r'<link rel="stylesheet" href="([^"]+)"', html)
    assert "/static/admin/css/base.css" in stylesheets
    for href in stylesheets:
        assert server.request("GET", href, headers=PROXY_HEADERS).status == 200, href


def test_plain_http_is_redirected_to_https(server: Server) -> None:
    response = server.request("GET", "/admin/login/", headers={"Host": HOST})
    assert response.status == 301
    assert response.headers["Location"] == f"{ORIGIN}/admin/login/"


def test_a_host_not_allowed_gets_400(server: Server) -> None:
    response = server.request(
        "GET", "/admin/login/", headers={**PROXY_HEADERS, "Host": "attacker.example.net"}
    )
    assert response.status == 400


def log_in(server: Server) -> SimpleCookie:
    """The login form filled in and posted as a browser would; the cookies it sets."""
    page = server.request("GET", "/admin/login/?next=/admin/", headers=PROXY_HEADERS)
    csrf_cookie = page.cookies()["csrftoken"].value
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
    assert match, page.body
    form = urlencode(
        {
            "csrfmiddlewaretoken": match.group(1).decode(),
            "username": USERNAME,
            "password": PASSWORD,
            "next": "/admin/",
        }
    ).encode()
    response = server.request(
        "POST",
        "/admin/login/?next=/admin/",
        headers={
            **PROXY_HEADERS,
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={csrf_cookie}",
            "Origin": ORIGIN,
            "Referer": f"{ORIGIN}/admin/login/?next=/admin/",
        },
        body=form,
    )
    assert response.status == 302, response.body.decode()
    assert response.headers["Location"] == "/admin/"
    return response.cookies()


def assert_admin_index_is_served(server: Server) -> None:
    cookies = log_in(server)
    session = cookies["sessionid"]
    assert session["secure"] is True
    assert session["httponly"] is True
    index = server.request(
        "GET", "/admin/", headers={**PROXY_HEADERS, "Cookie": f"sessionid={session.value}"}
    )
    assert index.status == 200, index.body.decode()
    html = index.body.decode()
    assert "Site administration" in html
    assert "Regression tracking" in html


def test_an_operator_logs_in_and_gets_the_admin_on_sqlite(tmp_path: Path, sqlite_url: str) -> None:
    env = {"DATABASE_URL": sqlite_url, "REGRESSION_TRACKING_LOG_LEVEL": "WARNING"}
    for command in (
        ["migrate", "--no-input", "-v", "0"],
        ["createsuperuser", "--no-input", "--username", USERNAME, "--email", "op@example.com"],
    ):
        result = run_entry_point(
            "console_script", *command, cwd=tmp_path, DJANGO_SUPERUSER_PASSWORD=PASSWORD, **env
        )
        assert result.returncode == 0, result.stderr
    collect_static(tmp_path)
    with serving(tmp_path, clean_environment(**serve_environment(tmp_path, sqlite_url))) as server:
        assert_admin_index_is_served(server)


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_an_operator_logs_in_and_gets_the_admin_on_postgresql(tmp_path: Path) -> None:
    from django.contrib.auth.models import User

    User.objects.create_superuser(USERNAME, "op@example.com", PASSWORD)
    collect_static(tmp_path)
    url = database_url(application_name="test_serve")
    with serving(tmp_path, clean_environment(**serve_environment(tmp_path, url))) as server:
        assert_admin_index_is_served(server)


def test_sigterm_stops_the_server_cleanly(server: Server) -> None:
    assert server.request("GET", "/admin/login/", headers=PROXY_HEADERS).status == 200
    started = time.monotonic()
    assert stop(server.process) == 0
    assert time.monotonic() - started < STOP_SECONDS
    assert b"Shutting down: Master" in server.stderr.read_bytes()


def test_sigterm_while_a_worker_boots_stops_the_server_at_once(
    tmp_path: Path, sqlite_url: str
) -> None:
    """gunicorn's worker keeps the master's SIGTERM handler until its own is installed; a SIGTERM
    in that window used to be lost, and the master then waited its graceful timeout (30 s) for a
    worker that never stops. A config hook that only sleeps after the fork widens the window."""
    collect_static(tmp_path)
    hook = tmp_path / "slow_boot.py"
    hook.write_text("import time\n\n\ndef post_fork(server, worker):\n    time.sleep(3)\n")
    cwd = tmp_path / "run"
    cwd.mkdir()
    process = start(
        [*server_command(), "--config", str(hook)],
        cwd=cwd,
        env=clean_environment(**serve_environment(tmp_path, sqlite_url)),
    )
    try:
        deadline = time.monotonic() + START_SECONDS
        while (cwd / "gunicorn.err").read_bytes().count(b"Booting worker") < 2:
            assert process.poll() is None, (cwd / "gunicorn.err").read_text()
            assert time.monotonic() < deadline, (cwd / "gunicorn.err").read_text()
            time.sleep(0.02)
        started = time.monotonic()
        process.terminate()
        returncode = process.wait(STOP_SECONDS)
    finally:
        stop(process)
    assert returncode == 0, (cwd / "gunicorn.err").read_text()
    assert time.monotonic() - started < 2.5
    assert b"Shutting down: Master" in (cwd / "gunicorn.err").read_bytes()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"DJANGO_SECRET_KEY": ""},
            "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off: the web app will not start "
            "with the development key",
        ),
        (
            {"DJANGO_HTTPS": "sometimes"},
            "wsgi: configuration error: DJANGO_HTTPS must be one of 1, true, yes, on, 0, false, "
            "no, off (or empty), not 'sometimes'",
        ),
        (
            # The package's settings would fall back to a db.sqlite3 in the server's directory,
            # create it empty and fail every login on its missing tables.
            {"DATABASE_URL": ""},
            "wsgi: configuration error: DATABASE_URL is not set: set it to the database to use, "
            "e.g. postgres://user@host:5432/sentry",
        ),
    ],
    ids=["no_secret_key", "bad_setting", "no_database_url"],
)
def test_a_server_that_cannot_start_exits_1_at_once_in_one_line(
    env: dict[str, str], message: str, tmp_path: Path, sqlite_url: str
) -> None:
    collect_static(tmp_path)
    cwd = tmp_path / "run"
    cwd.mkdir()
    process = start(
        server_command(),
        cwd=cwd,
        env=clean_environment(**{**serve_environment(tmp_path, sqlite_url), **env}),
    )
    try:
        returncode = process.wait(START_SECONDS)
    finally:
        stop(process)
    stderr = (cwd / "gunicorn.err").read_text()
    assert returncode == 1, stderr
    # Said once: no worker was started to fail again and again.
    assert stderr.splitlines() == [message]
    assert sorted(path.name for path in cwd.iterdir()) == ["gunicorn.err", "gunicorn.out"]
