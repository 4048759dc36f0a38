# The two set-up commands of the README: `make demo` and `make test`.
# Both create .venv, install torch's local CPU wheel (never a CUDA build) and lrkit with its extras.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= lrkit-out

.PHONY: setup demo test lint browser clean docs

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[all,dev]"
	touch $@

# lrkit's main job on its built-in default
demo: setup
	$(VENV)/bin/lrkit study lr --out $(OUT)

# Debian's chromium for the landscape page's browser test
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

test: setup browser
	$(PY) -m pytest -n 2 --dist loadgroup src tests

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) $(OUT) site .pytest_cache .mypy_cache .ruff_cache

# the documentation site, offline, into site/; --strict: a warning (a broken cross-reference) fails the build
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict
