# Two commands set everything up on a fresh clone:  `make repro`  and  `make test`.
# Each creates .venv and installs the package with its dev extras when needed.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install repro test lint bench pull clean-nbval

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' 2>&1 \
		| grep -v "is ignored: it is neither a file nor a directory" || true
	$(BIN)/python -c "import facepruning, torch, torch_pruning, papermill, nbval, dvc"
	touch $(STAMP)

## Run the whole pipeline (dvc repro) on the embedded ORL default, then regenerate the
## README's result blocks from metrics/analysis.json.
repro: $(STAMP)
	$(BIN)/dvc repro
	$(BIN)/python -m facepruning readme

LINTED := src tests benchmarks notebooks

## The whole test suite: ruff (lint and format) on the code and notebooks, then pytest on tests/
## and nbval on notebooks/ (small default parameters).
test: lint clean-nbval
	$(BIN)/python -m pytest tests notebooks

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

## Fetch data and models from the project's DVC remote, or say how to get them without one.
pull: $(STAMP)
	@if $(BIN)/dvc remote default >/dev/null 2>&1; then $(BIN)/dvc pull; else \
	  echo "make pull: no DVC remote is configured, so there is nothing to pull from. Add the one" \
	    "that holds the models (dvc remote add -d storage URL; docs/USING_MODELS.md) or build" \
	    "everything here with: make repro" >&2; exit 1; fi

## Benchmarks: measure and report, never fail on a slow machine.
bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

## nbval starts from nothing: a checkpoint left by older code would resume and hide a regression.
clean-nbval:
	rm -rf build/nbval
