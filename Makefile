# One task runner for people and CI alike. `make help` lists the targets.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: help demo test check lint typecheck unit bench system-deps clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/accord: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

demo: $(BIN)/accord  ## set up and run the demo consortium (Ctrl-C stops it)
	$(BIN)/accord demo

test: system-deps $(BIN)/accord check  ## set up and run the whole test suite (what CI runs)
	$(BIN)/pytest

check: lint typecheck  ## ruff and mypy

lint: $(BIN)/accord
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(BIN)/accord
	$(BIN)/mypy

unit: $(BIN)/accord  ## only the fast unit tests
	$(BIN)/pytest tests/unit

bench: $(BIN)/accord  ## run every benchmark and print their figures
	bash benchmarks/run_all.sh

system-deps:  ## install the services the tests start themselves (PostgreSQL, Chromium, Java for Spark)
	bash scripts/system-deps.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
