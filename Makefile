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

# The Slicer module in Slicer's own Python layer (Testing/Python/slicer_harness): Slicer's parameterNodeWrapper and
# ScriptedLoadableModule from ../shared/slicer-python over the real MRML classes of the slicer-core wheel (large: VTK
# and Slicer's libraries, no Qt), Qt from PySide6. Slicer's own wrapper tests, the bridge, the Logic, the Widget with
# the real .ui and MedPrepTest. Slicer's files need Python 3.10+: main environment only.
.PHONY: test-slicer panel-picture
test-slicer: install
	$(PY) -m pip install --quiet -e ".[slicer-test]"
	$(PY) -m pytest -q -p no:cacheprovider Testing/Python/slicer_bridge

# Resources/Screenshots/MedPrep-panel.png: the panel after Scan, Load and Apply on the demo data, rendered by the harness.
panel-picture: install
	$(PY) -m pip install --quiet -e ".[slicer-test]"
	$(PY) Testing/Python/slicer_harness/render_panel.py demo-output
