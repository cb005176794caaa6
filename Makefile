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
demo: $(INSTALLED)
	DATABASE_URL= $(BIN)/python manage.py migrate --no-input

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

test: lint
	$(BIN)/python scripts/run_tests.py $(PYTEST_ARGS)
