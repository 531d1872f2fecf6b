# Two commands: `make run` sets everything up and starts the control station; `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run setup test test-multihost lint screenshots bench clean

run: setup
	$(BIN)/farmgui

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/system-deps.sh
	bash scripts/system-deps.sh run
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,render]'
	touch $(STAMP)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: setup
	bash scripts/system-deps.sh test
	$(MAKE) lint
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -m "not multihost" $(PYTEST_ARGS)

# The multi-host fault scenarios (network namespaces, needs root): ~5 min on a quiet machine, timing-sensitive
# on a loaded one, so they run on their own (see tests/multihost/ and docs/guarantees.md).
test-multihost: setup
	bash scripts/system-deps.sh test
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -m multihost tests/multihost $(PYTEST_ARGS)

# Regenerate the control station's screenshots (artifacts/screenshots/): the window tests write them.
screenshots: setup
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q tests/farmgui/test_window.py tests/farmgui/test_window_farm.py

bench: setup
	$(BIN)/python benchmarks/blendfile_vs_bat.py

clean:
	rm -rf $(VENV) build *.egg-info artifacts
