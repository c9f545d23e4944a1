# The two commands a new user needs: `make install`, then `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch; override (e.g. TORCH="torch==2.13.0 --index-url ...") for a CUDA build.
TORCH ?= torch==2.13.0

.PHONY: install test test-fast demo benchmark clean

install:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(TORCH)
	$(BIN)/pip install -e ".[dev,phonemes,sweep]"

test:
	$(BIN)/python -m pytest

test-fast:
	$(BIN)/python -m pytest -m "not slow"

demo:
	$(BIN)/python -m unispeech.train

benchmark:
	$(BIN)/python scripts/benchmark.py

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
