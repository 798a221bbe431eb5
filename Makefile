# chatq: `make demo` runs the pipeline end to end, `make test` runs every test.
# Both set everything up on a fresh machine first (a .venv with the project and its tools).

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.chatq-installed

.PHONY: setup browser model demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[cpu,train,dev]'
	touch $(STAMP)

model: setup
	$(BIN)/chatq model build

demo: model
	$(BIN)/chatq demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The operator dashboard's browser test drives Debian's chromium with Playwright (Playwright's
# own browser download cannot work here: only the package registries are reachable).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: model lint browser
	$(BIN)/pytest

# Benchmarks print side-by-side tables and write JSON to bench/results/. The pipeline benchmark
# needs the local PostgreSQL and RabbitMQ; bench/gpu.sh is for a GPU machine (see its header).
bench: model
	$(BIN)/chatq model build --quantize int8 --quantize q4
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/kv_cache.py
	$(BIN)/python bench/quantization.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/retrieval.py
	$(BIN)/python bench/routing.py
	$(BIN)/python bench/indexing.py
	$(BIN)/python bench/moderation.py
	$(BIN)/python bench/serving.py

clean:
	rm -rf .chatq/data .cache .pytest_cache
