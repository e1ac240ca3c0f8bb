# The two commands README shows first: `make demo` and `make test`.
# Both create .venv, install torch==2.13.0 before the project, then run. From PyPI on Linux that pin is torch's
# CUDA build (what a GPU user gets; it also runs on a CPU); a machine whose pip finds a CPU wheel first (2.13.0+cpu:
# a local wheel folder, as on CI, or the download.pytorch.org/whl/cpu index) gets that one, which never uses a GPU.
# `$(VENV)/bin/autoseg doctor` says which build is installed and what --device auto picks.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.autoseg-installed

.PHONY: demo test test-fast install system-deps bench gpu-check clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[test,slicer,web,postgres,dashboard]'
	touch $(STAMP)

install: $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

demo: install
	$(VENV)/bin/autoseg demo --out demo-output

test: install system-deps
	PYTHONUTF8=1 $(PY) -m pytest -n 2 --timeout 1200 --durations=40 Testing

test-fast: install
	PYTHONUTF8=1 $(PY) -m pytest -n 2 -m "not slow" Testing

bench: install
	for b in bench/*.py; do $(PY) $$b || exit 1; done

# the GPU path on a CUDA machine (≤ 8 min on one H100/H200), everything into gpu-check-output/.
# Needs torch's CUDA build in $(VENV) (what `install` gets from PyPI on Linux; with a CPU wheel it stops with
# 'NO CUDA', exit 2; `autoseg doctor` tells which is installed).
gpu-check:
	$(PY) bench/gpu_check.py --out gpu-check-output

clean:
	rm -rf $(VENV) demo-output gpu-check-output
