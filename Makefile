# Quick start: `make demo` and `make test`. Everything runs from .venv/.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-core bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: install
	$(VENV)/bin/medprep demo demo-output

test: install
	$(PY) -m pytest -n 2 -q Testing/Python

bench: install
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) Testing/bench/run_bench.py

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) demo-output .pytest_cache
