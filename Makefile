# stream-gru: `make demo` and `make test` on a fresh machine. Everything installs into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch is pinned here, not in the package metadata: `torch==2.13.0` takes the local CPU
# build; a looser requirement with torch absent would pull a CUDA build of several GB.
TORCH  := torch==2.13.0
STAMP  := $(VENV)/.installed
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

# The whole package is type-checked strictly by `make lint`; its layers by import-linter
# (the contracts in pyproject.toml, [tool.importlinter]).
.PHONY: install demo test bench soak lint format clean help

help:
	@echo "make install  create .venv: torch (CPU), the package with its train, ray and serve extras, test tools"
	@echo "make demo     train on BasicMotions, export, verify, stream the held-out recordings"
	@echo "make test     run the tests"
	@echo "make bench    the runtime against plain onnxruntime and PyTorch; Ray shards; the server (minutes)"
	@echo "make soak     1M steps of one stream, 1,000 ticks of a 10,000-stream pool, vs PyTorch"
	@echo "make lint     ruff check, ruff format --check, mypy --strict, the layers (lint-imports)"
	@echo "make format   ruff format and ruff check --fix"
	@echo "make clean    remove .venv and the demo's output"

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install $(TORCH)
	$(PIP) install -e ".[train,dev,ray,serve]"
# --no-deps: only the ONNX file in the wheel is used (tests, examples); its deps would pull torch.
	$(PIP) install --no-deps silero-vad==6.2.3
	touch $@

demo: install
	$(BIN)/stream-gru demo --out runs/demo

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/sharded.py --json benchmarks/results/sharded.json
	$(BIN)/python benchmarks/serve.py
	$(BIN)/python benchmarks/scale.py

soak: install
	$(BIN)/python benchmarks/soak.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy stream_gru
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) runs/demo
