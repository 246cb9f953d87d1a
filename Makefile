# `make test` and `make demo` each set up .venv on a fresh clone; nothing else is needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --constraint constraints.txt

.PHONY: test demo lint clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.dev: $(VENV)/bin/python pyproject.toml constraints.txt
	$(PIP) -e ".[dev,envs]"
	touch $@

$(VENV)/.run: $(VENV)/bin/python pyproject.toml constraints.txt
	$(PIP) -e ".[envs]"
	touch $@

test: $(VENV)/.dev
	$(PY) -m pytest -q

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

demo: $(VENV)/.run
	$(VENV)/bin/vjepa-world demo --out runs/demo

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
