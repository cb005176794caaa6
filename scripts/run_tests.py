"""The test command: the whole suite on PostgreSQL, then again on SQLite.

PostgreSQL is the one ``DATABASE_URL`` names when it is a ``postgres://`` URL; otherwise an embedded
server (pgserver) is started with its data directory in ``.pgdata/`` of the work tree and stopped at
the end. The SQLite run deselects the tests marked ``postgresql`` (they need PostgreSQL features);
nothing is skipped. Extra arguments go to both pytest runs.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def postgresql_url() -> Iterator[str]:
    configured = os.environ.get("DATABASE_URL", "")
    if configured.startswith(("postgres://", "postgresql://")):
        print(f"== PostgreSQL: DATABASE_URL ({configured.split('@')[-1]})", flush=True)
        yield configured
        return
    # pgserver keeps a lock file in the user's runtime directory; it warns when there is none.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
    import pgserver

    data_dir = ROOT / ".pgdata"
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    try:
        # The server listens only on a Unix socket in its data directory.
        socket_dir = quote(str(data_dir), safe="")
        print("== PostgreSQL: embedded pgserver in .pgdata/", flush=True)
        yield f"postgres://postgres@{socket_dir}/postgres"
    finally:
        server.cleanup()


def run_pytest(database_url: str, extra: list[str], args: list[str]) -> int:
    env = {**os.environ, "DATABASE_URL": database_url}
    command = [sys.executable, "-m", "pytest", *extra, *args]
    return subprocess.call(command, cwd=ROOT, env=env)


def main(args: list[str]) -> int:
    with postgresql_url() as url:
        postgres_status = run_pytest(url, [], args)
    print("== SQLite: in-memory test database", flush=True)
    sqlite_url = f"sqlite:///{ROOT / 'db.sqlite3'}"
    sqlite_status = run_pytest(sqlite_url, ["-m", "not postgresql"], args)
    print(
        f"== PostgreSQL run: {'passed' if postgres_status == 0 else 'FAILED'}; "
        f"SQLite run: {'passed' if sqlite_status == 0 else 'FAILED'}",
        flush=True,
    )
    return postgres_status or sqlite_status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
