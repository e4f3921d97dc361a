# Two entry points: `make reproduce` (build the book, smoke profile, offline) and `make test`.
# Both create the virtualenv and install requirements.txt when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= smoke
export CAKD_THREADS ?= 2

.PHONY: install reproduce test test-fast bench goldens notebooks clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt
	$(PY) -m ipykernel install --sys-prefix > /dev/null   # the standard python3 kernel of this virtualenv
	touch $@

install: $(VENV)/.installed

reproduce: install
	$(PY) -m cakd reproduce --profile $(PROFILE)

test: install
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow and not notebook"

bench: install
	$(PY) -m cakd bench --profile $(PROFILE)

goldens: install
	$(PY) -m cakd goldens

notebooks: install
	$(PY) -m cakd notebooks

clean:
	rm -rf _build book/runs results
