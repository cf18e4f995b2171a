# Quick start: `make demo` and `make test`. Everything runs from .venv/.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-compat test-clients bench lint clean

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
	rm -rf $(VENV) $(COMPAT) $(CLIENTS) demo-output bench-output .pytest_cache

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

# MedPrep's outputs in the real trainers (nnU-Net v2, MONAI, TorchIO) in their own environment. torch
# is installed first and pinned, as a CPU build, so that nnunetv2 does not pull a CUDA one.
CLIENTS := .venv-clients
CLIENTS_STAMP := $(CLIENTS)/.installed
TORCH_VERSION ?= 2.13.0
.PHONY: test-clients
test-clients: $(CLIENTS_STAMP)
	$(CLIENTS)/bin/python -m pytest -q -p no:cacheprovider Testing/Clients

$(CLIENTS_STAMP): pyproject.toml
	@test -x $(CLIENTS)/bin/python || $(PYTHON) -m venv $(CLIENTS)
	@$(CLIENTS)/bin/python -m pip install -qq --upgrade pip >$(CLIENTS)/pip.log 2>&1 || true
	@$(CLIENTS)/bin/python -m pip install -qq "torch==$(TORCH_VERSION)" >>$(CLIENTS)/pip.log 2>&1 || \
	  { echo "make test-clients: cannot install torch==$(TORCH_VERSION) (a CPU build) into $(CLIENTS): see $(CLIENTS)/pip.log, or set TORCH_VERSION" >&2; exit 1; }
	@$(CLIENTS)/bin/python -m pip install -qq "torch==$(TORCH_VERSION)" -e ".[clients]" >>$(CLIENTS)/pip.log 2>&1 || \
	  { echo "make test-clients: cannot install nnunetv2, monai and torchio into $(CLIENTS): see $(CLIENTS)/pip.log" >&2; exit 1; }
	@touch $@
