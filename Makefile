# The README's two commands. Both create .venv and install what they need on first use.
#   make run    start realtalk (no Azure endpoint configured: the local emulator is used)
#   make test   lint, type-check, check the layer contracts, run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# checkov (tests/deploy/test_infra.py runs it on infra/) pins packages older than the project's
# own, so it gets a venv of its own inside .venv (ignored by git, removed by `make clean`).
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV    := $(VENV)/checkov
CHECKOV_STAMP   := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

.PHONY: run test lint typecheck contracts pytest bench system-deps clean

$(STAMP): pyproject.toml src/realtalk/gateway/fastpath.pyx
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,silero,asr,aec,clients]"
	touch $(STAMP)

$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet "checkov==$(CHECKOV_VERSION)"
	touch $(CHECKOV_STAMP)

# Not echoed: the last line `realtalk serve` prints at start-up says what to open and do.
run: $(STAMP)
	@$(BIN)/realtalk serve

# Under CI the system packages the tests need are installed first (skips are failures there).
system-deps:
ifeq ($(CI),true)
	bash .ci/system-deps
endif

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP) $(CHECKOV_STAMP)
	$(BIN)/python -m pytest

test: system-deps lint typecheck contracts pytest

bench: $(STAMP)
	$(BIN)/python bench/emulator.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
