# The README's two commands: `make demo` (the main job on the embedded SQLite default) and
# `make test` (lint, types, then the whole suite on PostgreSQL and again on SQLite).
# A fresh Debian machine needs Python 3.11 and make; what else is missing (python3-venv, Chromium,
# GNU time) is installed by scripts/debian_packages when it can (root or passwordless sudo), else it
# prints the one command to run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed-requirements

.PHONY: demo test lint install system-packages

install: $(INSTALLED)

$(INSTALLED): requirements.txt requirements-dev.txt
	@scripts/debian_packages "make install" "$(PYTHON) -c 'import ensurepip, venv'" python3-venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# An empty DATABASE_URL means the embedded SQLite file db.sqlite3, whatever the shell exports.
# --replace: load_demo_data replaces its own demo organization, so `make demo` runs again and again.
DEMO_ENV := DATABASE_URL= REGRESSION_TRACKING_LOG_LEVEL=WARNING
demo: $(INSTALLED)
	$(DEMO_ENV) $(BIN)/python manage.py migrate --no-input
	$(DEMO_ENV) $(BIN)/python manage.py load_demo_data --replace
	@echo "== Dry run: what the cleanup would do"
	$(DEMO_ENV) $(BIN)/python manage.py cleanup_orphaned_regressions --dry-run -v 2
	@echo "== The cleanup itself"
	$(DEMO_ENV) $(BIN)/python manage.py cleanup_orphaned_regressions -v 2

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

# The browser test drives Debian's Chromium and the benchmark's small run reads peak RSS from GNU
# time; both are checked (and installed when possible) before any time is spent on lint.
system-packages:
	@scripts/debian_packages "make test" "test -x /usr/bin/chromium" chromium "test -x /usr/bin/time" time

test: system-packages $(INSTALLED)
	@$(MAKE) --no-print-directory lint
	$(BIN)/python scripts/run_tests.py $(PYTEST_ARGS)
