# The two commands a new user needs: `make install`, then `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch; override (e.g. TORCH="torch==2.13.0 --index-url ...") for a CUDA build.
TORCH ?= torch==2.13.0

.PHONY: install lint format test test-fast demo benchmark clean

install:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(TORCH)
	$(BIN)/pip install -e ".[dev,phonemes,sweep]"

# ruff, configured in pyproject.toml: lint rules, then the formatting check
LINTED := unispeech scripts tests

lint:
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

# what `lint` asks for: fixes what ruff can fix, then formats
format:
	$(BIN)/ruff check --fix $(LINTED)
	$(BIN)/ruff format $(LINTED)

test: lint
	$(BIN)/python -m pytest

test-fast: lint
	$(BIN)/python -m pytest -m "not slow"

demo:
	$(BIN)/python -m unispeech.train

benchmark:
	$(BIN)/python scripts/benchmark.py

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache .ruff_cache
