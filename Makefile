# The two commands a new user needs are `make run` and `make test-all` (CI's); both set up the environment first.
# `make test` is the contributor's loop: the suite without the few tests marked slow.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# pytest-xdist's `-n auto` counts physical cores (1 on a 2-vCPU hyperthreaded VM, the host's in a container)
TEST_WORKERS ?= $(shell nproc)
# one pytest-xdist worker per core (tests/conftest.py gives each one thread); a module's tests stay in one worker,
# so its shared tiny study is built once
PYTEST := $(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadscope
export DO_NOT_TRACK := 1
export KEDRO_DISABLE_TELEMETRY := 1
export MPLBACKEND := Agg

.PHONY: setup run test test-all lint repro lock clean-data ui bench dev notebook viz

setup: $(VENV)/.installed

# Bytecode is compiled once at install: where PYTHONDONTWRITEBYTECODE is set (these machines, some CI images) every
# `kedro` start otherwise recompiles ~4,200 modules, 8-11 s of a 16-18 s start.
$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install -q -p $(BIN)/python --compile-bytecode -r requirements.lock
	$(BIN)/uv pip install -q -p $(BIN)/python --no-deps -e .
	touch $@

run: setup           ## generate the default data and run the whole study: data -> teacher -> students -> report
	$(BIN)/kedro run

test: setup          ## the suite without the few tests marked slow (5-6 min on 2 cores): run it before each commit
	$(PYTEST) -m "not slow"

test-all: setup      ## the whole suite, slow tests included: what CI (.ci/run) runs
	$(PYTEST)

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
