# candleflow: `make demo` and `make test` work on a fresh machine with Python 3.11.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CANDLEFLOW_HOME ?= $(CURDIR)/var
export CANDLEFLOW_HOME
export DAGSTER_HOME := $(CANDLEFLOW_HOME)/dagster

.PHONY: install demo test test-fast ui stream bench lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# constraints.txt pins the versions this project was tested with; torch==2.13.0 (CPU build).
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,samples,k8s,celery]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/candleflow demo

test: install
	bash infra/test.sh

test-fast: install
	bash infra/test.sh -m "not slow and not recovery"

ui: install
	$(BIN)/candleflow init-home
	$(BIN)/dagster dev -m orchestration.definitions -h 127.0.0.1 -p 3000

stream: install
	$(BIN)/candleflow stream

bench: install
	bash infra/bench.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) var
