# geneva: `make help` lists the targets. Fresh machine: `make demo` or `make test`.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := $(CURDIR)/.venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.geneva-deps

# One target dir outside the clone, shared by cargo and maturin, so a fresh
# clone on the same machine reuses the ~10 min Lance/DataFusion build.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/geneva/target
# The same interpreter for `cargo test` and `maturin develop` keeps pyo3's
# build configuration identical, so switching between them rebuilds nothing.
export PYO3_PYTHON := $(VPY)
export VIRTUAL_ENV := $(VENV)
# The real-kernel tests (tests/*.rs) start ipykernel from this interpreter.
export GENEVA_TEST_PYTHON := $(VPY)

.PHONY: help tools setup develop demo test test-rust test-python lint fmt bench clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

tools: ## Check system tools (cargo, protoc, cc, python3 >= 3.11); apt-get what is missing
	@PYTHON=$(PYTHON) scripts/ensure-tools.sh

$(STAMP): requirements-dev.txt tests/object-stores/package-lock.json | tools
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	npm ci --prefix tests/object-stores --silent --no-audit --no-fund
	@touch $@

setup: tools $(STAMP) ## Create .venv with the pinned Python tools

develop: setup ## Build the Rust extension into .venv (debug profile)
	$(VPY) -m maturin develop --quiet

demo: develop ## Run notebooks/quickstart.ipynb headless; prints the executed notebook and HTML paths
	$(VPY) scripts/run_notebook.py notebooks/quickstart.ipynb --out-dir build/demo

test: develop test-rust test-python lint ## Every test: cargo tests, pytest, lint

test-rust: develop ## Rust unit tests and real-kernel integration tests
	LD_LIBRARY_PATH="$$($(VPY) -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH}" \
		cargo test --all-targets

test-python: develop ## pytest (tests/python)
	$(VPY) -m pytest --durations=15

lint: setup ## cargo fmt --check, cargo clippy -D warnings, ruff
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	$(VPY) -m ruff check .
	$(VPY) -m ruff format --check .

fmt: setup ## Format Rust and Python sources
	cargo fmt
	$(VPY) -m ruff format .
	$(VPY) -m ruff check --fix .

bench: setup ## Benchmarks (bench/) on a release build (~35 min to build the first time): ratios against baselines
	$(VPY) -m maturin develop --release --quiet
	$(VPY) bench/load_ext.py
	$(VPY) bench/backfill.py
	$(VPY) bench/object_store.py
	$(VPY) bench/shared_nothing.py
	$(VPY) bench/detached.py
	$(VPY) bench/multimodal.py
	$(VPY) bench/fragments.py
	$(VPY) bench/peers.py
	$(VPY) bench/pack.py
	$(VPY) bench/widgets.py

clean: ## Remove .venv and build outputs (keeps the shared cargo cache)
	rm -rf $(VENV) build
