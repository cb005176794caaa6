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

    from regression_tracking.metrics import check_configuration

    with exit_on_configuration_error(program):
        # Settings are read lazily; touching one imports the module and runs its checks.
        settings.INSTALLED_APPS  # noqa: B018
        django.setup()
        check_configuration()


def execute(argv: Sequence[str], *, default_settings: str) -> None:
    """Run the Django command in ``argv``; DJANGO_SETTINGS_MODULE defaults to the given one."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", default_settings)
    program = Path(argv[0]).name if argv else "regression-tracking"
    load_settings(program)
    from django.core.management import execute_from_command_line

    execute_from_command_line(list(argv))


def main() -> None:
    execute(sys.argv, default_settings=PACKAGE_SETTINGS)


if __name__ == "__main__":
    main()
