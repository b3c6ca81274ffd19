# keelml: the two commands that matter are `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
SPEC   ?= examples/adult/pipeline.yaml

.PHONY: demo test lint typecheck importlint unit bench install dev clean lock audit-deps test-airflow

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

## demo: create .venv, install keelml and run the example pipeline on the real UCI Adult data
demo: $(VENV)/.installed
	$(BIN)/keel run $(SPEC)
	@echo
	@echo "Run it again: everything is cached ->  $(BIN)/keel run $(SPEC) --json"
	@echo "Registered models                  ->  $(BIN)/keel models list -f $(SPEC)"
	@echo "Verify every signature and digest  ->  $(BIN)/keel verify $(SPEC)"

## test: the whole suite: ruff, mypy, import-linter contracts, pytest
test: lint typecheck importlint unit

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

importlint: $(VENV)/.installed-dev
	$(BIN)/lint-imports

unit: $(VENV)/.installed-dev
	$(BIN)/pytest -q

## test-airflow: import an exported DAG with Apache Airflow itself, in a venv of its own (.venv-airflow):
## Airflow is the `airflow` extra, not part of `dev`, and not in `make test`
AIRFLOW_VENV ?= .venv-airflow
test-airflow:
	test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet -e ".[airflow]" "pytest>=8.0" "pytest-timeout>=2.3"
	KEEL_REQUIRE_AIRFLOW=1 $(AIRFLOW_VENV)/bin/pytest -q -p no:cacheprovider tests/orchestrators/test_airflow_import.py

## bench: speed targets, each measured against its baseline in the same run
bench: $(VENV)/.installed-dev
	$(BIN)/python bench/cached_rerun.py
	$(BIN)/python bench/cli_startup.py
	$(BIN)/python bench/validate.py
	$(BIN)/python bench/csv_read.py
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/drift.py
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/stream.py

## lock: requirements.lock, the runtime dependencies at exact versions with SHA-256 hashes (reads the index;
## existing pins are kept, pass PIP_COMPILE_ARGS=--upgrade to refresh them)
lock: $(VENV)/.installed-dev
	$(BIN)/python -m pip install --quiet "pip-tools>=7.4"
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
		$(PIP_COMPILE_ARGS) --output-file requirements.lock pyproject.toml

## audit-deps: check requirements.lock against the known-vulnerability database (needs it online; not in `make test`)
audit-deps: $(VENV)/.installed-dev requirements.lock
	$(BIN)/python -m pip install --quiet "pip-audit>=2.7"
	$(BIN)/pip-audit --requirement requirements.lock --require-hashes --disable-pip --progress-spinner off

clean:
	rm -rf $(VENV) .venv-airflow examples/*/.keel examples/*/.keel-reports .pytest_cache .mypy_cache .ruff_cache
