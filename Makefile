# drip: the two commands a fresh machine needs are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_NOW ?= 2027-01-04T12:00Z

.PHONY: demo test lint clean

# The virtual environment, rebuilt when the dependencies change.
$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "drip needs Python 3.11 or newer; set PYTHON=python3.x")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

## Launch the example cohort on SQLite (drip.db here) and show its plan.
demo: $(VENV)/.installed
	$(BIN)/drip start cohorts/example --now $(DEMO_NOW)
	$(BIN)/drip plan cohorts/example --now $(DEMO_NOW) --participant kenji.tanaka@northwind.example
	$(BIN)/drip status example --now $(DEMO_NOW)

## Run the whole test suite.
test: $(VENV)/.installed
	$(BIN)/pytest

## Style and types.
lint: $(VENV)/.installed
	$(BIN)/ruff check drip tests bench
	$(BIN)/ruff format --check drip tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) drip.db drip.db-shm drip.db-wal .pytest_cache .mypy_cache .ruff_cache .hypothesis
