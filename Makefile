# liqmon: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: run test replay-sample bench lint clean

$(BIN)/liqmon: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	@touch $@

## run the monitor against the live venues in config/default.toml (ARGS="--config my.toml")
run: $(BIN)/liqmon
	$(BIN)/liqmon run $(ARGS)

## run the test suite (no network needed: local servers and recordings only)
test: $(BIN)/liqmon
	$(BIN)/pytest $(ARGS)

## replay the real Binance recordings shipped with the tests
replay-sample: $(BIN)/liqmon
	$(BIN)/liqmon replay tests/recordings/binance-spot-2021-10-12.jsonl.gz \
		tests/recordings/binance-usdm-2021-07-22.jsonl.gz \
		--metrics-out out/metrics.jsonl --books-out out/books.jsonl

## benchmarks (not tests): throughput, kernel latency and memory, with peers side by side
bench: $(BIN)/liqmon
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
