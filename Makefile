# The two commands a new user needs are `make run` and `make test`; both set up the environment first.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
export DO_NOT_TRACK := 1
export KEDRO_DISABLE_TELEMETRY := 1
export MPLBACKEND := Agg

.PHONY: setup run test lint repro lock clean-data ui bench dev notebook viz

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install -q -p $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install -q -p $(BIN)/python --no-deps -e .
	touch $@

run: setup           ## generate the default data and run the whole study: data -> teacher -> students -> report
	$(BIN)/kedro run

test: setup          ## the test suite (unit tests + end-to-end Kedro runs on conf/tiny)
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

repro: setup         ## the same study through DVC: only stale stages run, as children of one MLflow run
	$(BIN)/sstkd repro

ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db

dev: setup           ## development extras (requirements-dev.lock): jupyterlab for notebooks/, kedro-viz
	$(BIN)/uv pip install -q -p $(BIN)/python -r requirements-dev.lock

notebook: dev        ## open notebooks/ (lineage.ipynb, texture_modules.ipynb) in JupyterLab
	$(BIN)/jupyter lab notebooks/

viz: dev             ## the pipelines in kedro-viz
	$(BIN)/kedro viz run

bench: setup
	$(BIN)/python benchmarks/distillation_step.py

lock:                ## re-resolve requirements.in into requirements.lock (no URLs are written)
	uv pip compile -q --no-header --python-version 3.11 --python-platform x86_64-manylinux_2_28 requirements.in -o requirements.lock
	uv pip compile -q --no-header --python-version 3.11 --python-platform x86_64-manylinux_2_28 requirements-dev.in -o requirements-dev.lock
