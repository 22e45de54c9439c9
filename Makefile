# Two entry points, each self-contained on a fresh machine with only Python:
#   make demo   -> creates .venv, installs the package, explains a sample on the embedded model
#   make test   -> creates .venv, installs the package with its test extras, runs pytest
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test fuzz bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.base: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# torch goes in first and pinned, so that captum does not pull a CUDA build of torch.
$(VENV)/.test: $(VENV)/.base
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# DIANNA (a peer in the benchmarks) requires onnxruntime, which must not sit beside onnxruntime-gpu:
# it goes in without its declared dependencies.
$(VENV)/.bench: $(VENV)/.test
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m pip install --quiet --no-deps dianna xarray
	touch $@

demo: $(VENV)/.base
	$(BIN)/agnostic-explain demo --out demo-output

test: $(VENV)/.test
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

# The fuzz harness (fuzz/) for SECONDS seconds; failing inputs are kept under tests/fuzz_cases/,
# which tests/test_fuzz.py replays. `make test` runs it for about 60 s.
SECONDS ?= 600
SEED    ?= 0
fuzz: $(VENV)/.test
	$(BIN)/python -m fuzz --seconds $(SECONDS) --seed $(SEED) --json fuzz-results.json

bench: $(VENV)/.bench
	$(BIN)/python -m benchmarks run --device $(if $(DEVICE),$(DEVICE),cpu) --suite full

clean:
	rm -rf $(VENV) demo-output .pytest_cache fuzz-results.json
