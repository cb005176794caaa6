#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

from __future__ import annotations

import sys


def main() -> None:
    from regression_tracking.cli import execute

    execute(sys.argv, default_settings="config.settings")


if __name__ == "__main__":
    main()
