"""The ``regression-tracking`` console script: manage.py's commands with the package's settings.

``regression-tracking cleanup_orphaned_regressions --dry-run`` works from any directory; the
settings come from the environment (``DATABASE_URL`` …). A configuration error is one line on
stderr and exit 1, before any command runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from regression_tracking.environment import ConfigurationError

PACKAGE_SETTINGS = "regression_tracking.settings"

# With the package's settings, an unset DATABASE_URL would mean a db.sqlite3 in whatever directory
# the program runs from: created empty, failing on its missing tables.
DATABASE_URL_NOT_SET = (
    "DATABASE_URL is not set: set it to the database to use, e.g. postgres://user@host:5432/sentry"
)


@contextmanager
def exit_on_configuration_error(program: str) -> Iterator[None]:
    """Turn a ``ConfigurationError`` into one line ``<program>: <message>`` and exit 1."""
    try:
        yield
    except ConfigurationError as error:
        message = " ".join(str(error).split())
        sys.stderr.write(f"{program}: configuration error: {message}\n")
        raise SystemExit(1) from None


def load_settings(program: str) -> None:
    """Import the settings and set Django up, so configuration errors surface here, in one line."""
    import django
    from django.conf import settings

    from regression_tracking.ops.metrics import check_configuration

    with exit_on_configuration_error(program):
        module = os.environ.get("DJANGO_SETTINGS_MODULE", "")
        if not module.strip():
            raise ConfigurationError(
                "DJANGO_SETTINGS_MODULE is set but empty: unset it or name a settings module"
            )
        try:
            # Settings are read lazily; touching one imports the module and runs its checks.
            settings.INSTALLED_APPS  # noqa: B018
        except ImportError as error:
            if error.name is None or not module.startswith(error.name):
                raise
            raise ConfigurationError(
                f"DJANGO_SETTINGS_MODULE={module!r} cannot be imported ({error.name} not found)"
            ) from None
        django.setup()
        check_configuration()


def execute(
    argv: Sequence[str], *, default_settings: str, require_database_url: bool = False
) -> None:
    """Run the Django command in ``argv``; DJANGO_SETTINGS_MODULE defaults to the given one."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", default_settings)
    program = Path(argv[0]).name if argv else "regression-tracking"
    load_settings(program)
    using_package_settings = os.environ["DJANGO_SETTINGS_MODULE"] == default_settings
    if (
        require_database_url
        and using_package_settings
        and not os.environ.get("DATABASE_URL", "")
        and _needs_database(argv[1:])
    ):
        with exit_on_configuration_error(program):
            raise ConfigurationError(DATABASE_URL_NOT_SET)
    from django.core.management import execute_from_command_line

    execute_from_command_line(list(argv))


# Commands that never open the database: the image runs them at build time, with no DATABASE_URL.
COMMANDS_WITHOUT_DATABASE = frozenset({"help", "version", "collectstatic", "check"})


def _needs_database(arguments: Sequence[str]) -> bool:
    if not arguments or arguments[0] in COMMANDS_WITHOUT_DATABASE:
        return False
    return not any(argument in ("-h", "--help", "--version") for argument in arguments)


def main() -> None:
    """The console script: its database comes only from DATABASE_URL.

    Without one it would fall back to a ``db.sqlite3`` in whatever directory it was run from, create
    that file empty and fail on its missing tables, so it says what to set and creates nothing.
    """
    execute(sys.argv, default_settings=PACKAGE_SETTINGS, require_database_url=True)


if __name__ == "__main__":
    main()
