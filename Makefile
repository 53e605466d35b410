# The two set-up commands of the README: `make demo` and `make test`.
# Both create .venv, install the package with its C extensions (editable), then run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUILD_INPUTS := pyproject.toml setup.py $(wildcard src/_fastcore/*.pyx src/_fastcore/*.pxd src/_fastcore/*.c src/_fastcore/*.h src/_fastcore/_wheel_build.py)

.PHONY: demo test bench soak clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: $(PY) $(BUILD_INPUTS)
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

demo: $(VENV)/.installed
	$(PY) docs/examples/demo.py

# the whole suite, once per _fastcore core; a missing compiled extension fails the first run
test: $(VENV)/.installed
	TRIO_PEEPER_FASTCORE=cython $(PY) -m pytest
	TRIO_PEEPER_FASTCORE=python $(PY) -m pytest

bench: $(VENV)/.installed
	$(PY) benches/run_all.py

# many more kill -9 trials than `make test` runs (SQLite and PostgreSQL)
soak: $(VENV)/.installed
	TRIO_PEEPER_SOAK_TRIALS=200 $(PY) -m pytest tests/durable/test_kill9.py -q

clean:
	rm -rf $(VENV) build src/*.egg-info src/_fastcore/*.so src/_fastcore/_ring.c src/_fastcore/_wheel_cffi*
