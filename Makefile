# greenproof: one entry point. `make demo` and `make test` each set up
# everything they need on a fresh machine (venv, torch CPU build, project, anvil).
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(CURDIR)/node_modules/.bin:$(PATH)
export PYTHONDONTWRITEBYTECODE := 1
# ape writes its data (accounts, compiler cache) here, not into $HOME.
export APE_DATA_FOLDER ?= $(CURDIR)/.cache/ape
# Number of hypothesis examples for the stateful contract fuzz (make fuzz raises it).
FUZZ_EXAMPLES ?= 1000

.PHONY: setup compile browser demo test test-python test-contracts test-integration fuzz bench lint clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first: the pinned CPU build. GPU users install their CUDA build instead (README).
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	anvil --version >/dev/null
	touch $@

compile: setup
	ape compile

demo: setup
	$(BIN)/greenproof demo

# Contracts run under ape's pytest plugin on its in-process chain; everything else is
# plain pytest (the ape plugin off) and starts its own anvil nodes where it needs one.
# Every group runs even when an earlier one fails (one failure never hides the rest);
# the target fails if any group did, and names which.
TEST_GROUPS := test-python test-contracts test-integration
test: setup browser
	ape compile
	@failed=""; for group in $(TEST_GROUPS); do \
	    $(MAKE) --no-print-directory $$group || failed="$$failed $$group"; \
	done; \
	if [ -n "$$failed" ]; then echo "make test: FAILED:$$failed"; exit 1; fi

test-python: setup
	$(BIN)/python -m pytest -p no:ape_test tests/python tests/fuzz -q

test-contracts: setup
	ape test tests/contracts -q

test-integration: setup browser
	$(BIN)/python -m pytest -p no:ape_test tests/integration tests/e2e -q

# Debian's chromium for the Playwright browser test (installed only when missing).
browser:
	bash scripts/install-browser.sh

fuzz: setup
	FUZZ_EXAMPLES=20000 $(BIN)/python -m pytest -p no:ape_test tests/fuzz -q

# Each benchmark prints a table and writes bench/results/NAME.json. extrapolate computes from
# overhead's results; bench/gpu_check.py needs a CUDA GPU and is run by hand (docs/engine.md).
bench: setup
	for b in gas hashing overhead disk extrapolate replay verify tolerance; do $(BIN)/python bench/$$b.py || exit 1; done

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf .build .cache demo-out
