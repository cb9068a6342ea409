# Two entry points (see README): `make bench` runs the main job, `make test` the test suite.
# Both create .venv and install everything on first use.
PY ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.geodl-installed
# the repository keeps its generated-data cache in datasets/cache (a pip install uses ~/.cache/geodl)
export GEODL_DATA ?= $(CURDIR)/datasets/cache

.PHONY: bench test setup clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first: a CPU build where one is offered locally; otherwise pip's default.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test,gpu,geo,bench,peers,mesh]"
	touch $(STAMP)

setup: $(STAMP)

bench: $(STAMP)
	$(BIN)/geodl info
	$(BIN)/geodl check geodl.testing.examples:invariant_model --group E3+perm --inputs node:points --outputs scalar
	$(BIN)/geodl check geodl.testing.examples:equivariant_model --group E3+perm --inputs node:points --outputs node:vectors
	$(BIN)/geodl bench nbody --quick --out benchmarks/results --run-dir runs/nbody
	$(BIN)/geodl bench shapes --quick --out benchmarks/results --run-dir runs/shapes
	$(BIN)/geodl bench vinet --quick --out benchmarks/results --run-dir runs/vinet
	$(BIN)/geodl bench articulated --quick --out benchmarks/results --run-dir runs/articulated

test: $(STAMP)
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q tests --doctest-modules geodl

clean:
	rm -rf $(VENV) build *.egg-info
