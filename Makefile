# Two commands for a fresh machine:  `make demo`  and  `make test`.
# Both create .venv/ on first use. torch is installed first and pinned to the
# CPU build on disk (2.13.0); if .venv already has a torch (a GPU user who
# installed their own), it is kept.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

$(STAMP): requirements.txt requirements-test.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -r requirements-test.txt
	$(PY) -m pip install --no-deps -e .
	touch $(STAMP)

.PHONY: venv demo test test-all bench
venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/internvideo demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --durations=15

test-all: $(STAMP)
	$(PY) -m pytest -q -n 2 -m ""

bench: $(STAMP)
	$(PY) -m benchmarks.run
