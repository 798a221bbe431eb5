# chatq: `make demo` runs the pipeline end to end, `make test` runs every test.
# Both set everything up on a fresh machine first (a .venv with the project and its tools).

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.chatq-installed

.PHONY: setup model demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[cpu,dev]'
	touch $(STAMP)

model: setup
	$(BIN)/chatq model build

demo: model
	$(BIN)/chatq demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: model lint
	$(BIN)/pytest

clean:
	rm -rf .chatq/data .cache .pytest_cache
