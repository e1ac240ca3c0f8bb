# The two commands README shows first: `make demo` and `make test`.
# Both create .venv, install torch==2.13.0 (CPU wheel) before the project, then run.
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
	PYTHONUTF8=1 $(PY) -m pytest -n 2 --timeout 1200 Testing

test-fast: install
	PYTHONUTF8=1 $(PY) -m pytest -n 2 -m "not slow" Testing

bench: install
	for b in bench/*.py; do $(PY) $$b || exit 1; done

# issue 21: the GPU path on a CUDA machine (≤ 8 min on one H100/H200), everything into gpu-check-output/.
# Needs a CUDA build of torch in $(VENV) (the CPU wheel of `install` makes it stop with 'NO CUDA', exit 2).
gpu-check:
	$(PY) bench/gpu_check.py --out gpu-check-output

clean:
	rm -rf $(VENV) demo-output gpu-check-output
