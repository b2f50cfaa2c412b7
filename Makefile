# Every target sets itself up on a fresh machine: a virtual environment in .venv, torch first
# (scripts/install_torch.py: the CPU build from PyTorch's CPU index where no NVIDIA GPU is visible, so pip
# never pulls gigabytes of CUDA packages), then sceneseg itself in editable mode.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.sceneseg-installed
TORCH_VERSION ?= 2.13.0
# `make setup TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130` (or cu126, cpu) picks that build.
TORCH_INDEX_URL ?=
DEMO_OUT ?= demo-output
# The temporary Prefect server's telemetry write can hit "database is locked" on a busy SQLite file.
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: setup demo test bench bench-gpu clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/install_torch.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python scripts/install_torch.py --version "$(TORCH_VERSION)" --index-url "$(TORCH_INDEX_URL)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sceneseg demo --out $(DEMO_OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/peers.py
	$(BIN)/python bench/vectorize.py

# On a lent CUDA machine: the CUDA tests, then the model alone and the pipeline at 8192^2 (bench/gpu.sh).
bench-gpu:
	bash bench/gpu.sh

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .hypothesis
