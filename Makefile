# The README's two commands: `make demo` (the main job on the embedded SQLite default) and
# `make test` (lint, types, then the whole suite on PostgreSQL and again on SQLite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed-requirements

.PHONY: demo test lint install

install: $(INSTALLED)

$(INSTALLED): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# An empty DATABASE_URL means the embedded SQLite file db.sqlite3, whatever the shell exports.
DEMO_ENV := DATABASE_URL= REGRESSION_TRACKING_LOG_LEVEL=WARNING
demo: $(INSTALLED)
	$(DEMO_ENV) $(BIN)/python manage.py migrate --no-input
	$(DEMO_ENV) $(BIN)/python manage.py load_demo_data
	@echo "== Dry run: what the cleanup would do"
	$(DEMO_ENV) $(BIN)/python manage.py cleanup_orphaned_regressions --dry-run -v 2
	@echo "== The cleanup itself"
	$(DEMO_ENV) $(BIN)/python manage.py cleanup_orphaned_regressions -v 2

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

# The browser test (tests/test_admin_browser.py) drives Debian's Chromium and never skips, so check
# for it before spending time on lint. Installing system packages is left to the caller (.ci/run
# does it on CI): `make test` never runs apt behind a developer's back.
CHROMIUM := /usr/bin/chromium
test:
	@test -x $(CHROMIUM) || { \
		echo "make test: $(CHROMIUM) is missing; the browser test needs Debian's Chromium." >&2; \
		echo "Install it with: apt-get update && apt-get install -y chromium  (as root or with sudo)" >&2; \
		exit 1; }
	@$(MAKE) --no-print-directory lint
	$(BIN)/python scripts/run_tests.py $(PYTEST_ARGS)
