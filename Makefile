# Two commands: `make demo` (the main job) and `make test` (the test suite).
# Both create or reuse the virtual environment in .venv with Python >= 3.12.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT ?= demo_output

.PHONY: demo test venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@set -e; \
	if [ ! -x "$(PY)" ] || ! "$(PY)" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then \
	  PYBIN=$$(bash scripts/find_python.sh) || { echo "ERROR: no Python >= 3.12 found (looked on PATH for python3.13, python3.12, python3 and in ~/.pyenv/versions). Install Python 3.12 or newer." >&2; exit 1; }; \
	  echo "Creating $(VENV) with $$PYBIN"; rm -rf $(VENV); "$$PYBIN" -m venv $(VENV); \
	fi; \
	$(PY) -m pip install -q --upgrade pip; \
	$(PY) -m pip install -q -e '.[test]'; \
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/bayesmlm demo --out $(OUT)

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile -q tests bayesmlm

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
