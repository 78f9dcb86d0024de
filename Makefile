# drip: the two commands a fresh machine needs are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_NOW ?= 2027-01-04T12:00Z
DEMO_FROM ?= 2027-01-10T00:00Z
DEMO_UNTIL ?= 2027-02-05T00:00Z
DEMO_URL ?= http://127.0.0.1:8000

.PHONY: demo test lint clean

# The virtual environment, rebuilt when the dependencies change.
$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "drip needs Python 3.11 or newer; set PYTHON=python3.x")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

## The whole loop on the example cohort, on this machine only: launch it, send its first four weeks in
## virtual time to the built-in mail catcher, then serve the inbox page (Ctrl-C to stop).
demo: $(VENV)/.installed
	$(BIN)/drip start cohorts/example --now $(DEMO_NOW)
	$(BIN)/drip run --once --now $(DEMO_FROM) --until $(DEMO_UNTIL)
	$(BIN)/drip status example --now $(DEMO_UNTIL)
	$(BIN)/drip report example --now $(DEMO_UNTIL) --out example-report.html
	@echo "Open $(DEMO_URL)/inbox to read what the executives (and, on Mondays, the owner) received."
	$(BIN)/drip serve --now $(DEMO_UNTIL)

## Run the whole test suite.
test: $(VENV)/.installed
	$(BIN)/pytest

## Style and types.
lint: $(VENV)/.installed
	$(BIN)/ruff check drip tests bench
	$(BIN)/ruff format --check drip tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) drip.db drip.db-shm drip.db-wal example-report.html .pytest_cache .mypy_cache .ruff_cache .hypothesis
