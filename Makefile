# liqmon: the two commands a newcomer needs are `make run` and `make test`.
# Prerequisites: Python >= 3.11 (PYTHON=python3.12 to pick another) and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: run test lint replay-sample bench clean

# The venv, made with a Python checked first (an older one stops here, not in a traceback).
$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { \
		echo "liqmon needs Python >= 3.11: '$(PYTHON)' was not found." \
			"Install Python 3.11 or newer, then: make $(MAKECMDGOALS) PYTHON=python3.11" >&2; \
		exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
		echo "liqmon needs Python >= 3.11, but '$(PYTHON)' is $$($(PYTHON) --version 2>&1)." \
			"Install Python 3.11 or newer, then: make $(MAKECMDGOALS) PYTHON=python3.11" >&2; \
		exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# One stamp per set of extras: each target installs what it needs, once.
$(VENV)/.installed-run: pyproject.toml setup.py | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml setup.py | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

$(VENV)/.installed-bench: pyproject.toml setup.py | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[bench]'
	@touch $@

## run the monitor against the live venues in config/default.toml (ARGS="--config my.toml")
run: $(VENV)/.installed-run
	$(BIN)/liqmon run $(ARGS)

## run the test suite (no network needed: local servers and recordings only)
test: $(VENV)/.installed-test
	$(BIN)/pytest $(ARGS)

## lint: ruff (rules and formatting), mypy (strict), import-linter (the layering rules)
lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	PYTHONPATH=. $(BIN)/lint-imports  # the checkout itself, whatever is installed

## replay the real Binance recordings shipped with the tests
replay-sample: $(VENV)/.installed-run
	$(BIN)/liqmon replay tests/recordings/binance-spot-2021-10-12.jsonl.gz \
		tests/recordings/binance-usdm-2021-07-22.jsonl.gz \
		--metrics-out out/metrics.jsonl --books-out out/books.jsonl

## benchmarks (not tests): throughput, kernel latency and memory, with peers side by side
bench: $(VENV)/.installed-bench
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) out build dist *.egg-info .pytest_cache .hypothesis
