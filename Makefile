# Two entry points (README): `make demo` (train -> export -> evaluate on a small
# default) and `make test` (the whole test suite). Each installs what it needs
# into .venv first, so both work on a fresh machine with Python >= 3.11.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test bench gpu-report clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[train,export,pi,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m experiments.demo $(ARGS)

# Two pytest workers, each test file on one (module fixtures stay in one process; files
# sharing a session fixture go to the same worker: tests/conftest.py):
# about 11 min instead of 17 on a 2-core machine. TEST_WORKERS=0 runs in this process.
# The slowest tests are listed at the end (the budget: none over 60 s).
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15 $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m experiments.bench_env $(ARGS)

# On a GPU box (NVIDIA driver >= 580): install with JAX's CUDA 13 plugin, then every GPU
# figure in one enforced 540 s budget (experiments/device_report.py). ARGS=--out_dir=DIR.
gpu-report:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[gpu]"
	$(BIN)/python -m experiments.device_report $(ARGS)

clean:
	rm -rf runs .pytest_cache .jax_cache
