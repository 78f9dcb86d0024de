# drip: the two commands a fresh machine needs are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint clean

# The virtual environment, rebuilt when the dependencies change.
$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "drip needs Python 3.11 or newer; set PYTHON=python3.x")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

## The example cohort's first weeks in virtual time, on this machine only: executives click, reply,
## bounce and snooze; then its status, its report, and the mail catcher's inbox (Ctrl-C to stop).
demo: $(VENV)/.installed
	$(BIN)/drip demo cohorts/example

## Run the whole test suite.
test: $(VENV)/.installed
	$(BIN)/pytest

## Style and types.
lint: $(VENV)/.installed
	$(BIN)/ruff check drip tests bench
	$(BIN)/ruff format --check drip tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) drip.db drip.db-shm drip.db-wal drip.db.demo-replies drip.db.spool drip-mail example-report.html .pytest_cache .mypy_cache .ruff_cache .hypothesis
