# labstream: one command per job. Everything runs from the project venv (.venv);
# the system Python is only used to create it.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=
LINT_PATHS := base labstream connectors streams tracing replay explain tests bench clients/python

.PHONY: help install stack test unit lint demo down screenshots

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

install: $(INSTALLED) ## create .venv and install labstream (again only when pyproject.toml changes)

$(INSTALLED): pyproject.toml clients/python/pyproject.toml connectors/_speedups.c streams/_avrodecode.c
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@# the subscribers' client package (its own distribution), tested with the rest
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e 'clients/python[kafka,faust]'
	@touch $@

stack: install ## start PostgreSQL + Kafka (idempotent) and apply the migrations
	$(BIN)/labstream stack up
	$(BIN)/labstream db migrate

test: install stack ## the whole suite, unit and integration, against the local stack
	@rc=0; $(BIN)/pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: nothing ran" >&2; fi; \
	exit $$rc

unit: install ## only the unit tests (no services needed)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

lint: install ## ruff, mypy and the layering contract (import-linter)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/mypy base labstream connectors streams tracing replay explain
	$(BIN)/mypy clients/python/labstream_client
	$(BIN)/lint-imports

screenshots: install stack ## refresh docs/screenshots/console-*.png (README, docs/console.md) in Chromium
	LABSTREAM_UPDATE_SCREENSHOTS=1 $(BIN)/pytest tests/integration/test_console_browser.py

demo: install stack ## the end-to-end demo on the local stack
	$(BIN)/labstream demo

down: ## stop the local stack (data kept; `.venv/bin/labstream stack down --purge` deletes it)
	@if [ -x $(BIN)/labstream ]; then $(BIN)/labstream stack down; fi
