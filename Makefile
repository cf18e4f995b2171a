# Quick start: `make demo` and `make test`. Everything runs from .venv/.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-compat bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: install
	$(VENV)/bin/medprep demo demo-output

test: install
	$(PY) -m pytest -n 2 -q Testing/Python --ignore=Testing/Python/slicer_bridge
	$(MAKE) test-compat
	$(MAKE) test-slicer

# The library runs inside Slicer 5.6+, whose Python may be 3.9 with pydicom 2.4 and numpy 1.26: run
# the MedPrepLib tests once more in such an environment (Python 3.9 where the machine has one).
COMPAT := .venv-compat
COMPAT_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.9*/bin/python3.9) \
                  $(shell command -v python3.9 2>/dev/null) $(PYTHON))
test-compat:
	test -x $(COMPAT)/bin/python || $(COMPAT_PYTHON) -m venv $(COMPAT)
	$(COMPAT)/bin/python -m pip install --quiet --upgrade pip
	$(COMPAT)/bin/python -m pip install --quiet -e ".[test]" "pydicom>=2.4,<3" "numpy>=1.26,<2"
	$(COMPAT)/bin/python -m pytest -n 2 -q -p no:cacheprovider Testing/Python --ignore=Testing/Python/slicer_bridge

bench: install
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) Testing/bench/run_bench.py

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) $(COMPAT) demo-output bench-output .pytest_cache

# MedPrep's Slicer-side code (MedPrep/MedPrepBridge.py) against the real MRML classes of the slicer-core
# wheel, which is large (VTK and Slicer's libraries, no Qt): its own extra and target.
.PHONY: test-slicer
test-slicer: install
	$(PY) -m pip install --quiet -e ".[slicer-test]"
	$(PY) -m pytest -q -p no:cacheprovider Testing/Python/slicer_bridge
