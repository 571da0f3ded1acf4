# robofume: `make up` runs the simulated default end to end, `make test` passes the tests.
# Both install what they need first (virtualenv, Python packages, Mesa/EGL libraries).

PYTHON_VERSION ?= 3.11
VENV    ?= .venv
PY      := $(VENV)/bin/python
PRESET  ?= sim-cpu
ARGS    ?=
STAMP   := $(VENV)/.installed

.PHONY: help install system-deps protos test test-all test-gpu test-robot lint format bench up down status actor clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

system-deps:  ## install the Debian packages headless MuJoCo rendering needs (when missing)
	@bash scripts/system-deps.sh

$(STAMP): pyproject.toml constraints.txt scripts/install.sh
	@$(MAKE) --no-print-directory system-deps
	@bash scripts/install.sh $(VENV) $(PYTHON_VERSION)
	@touch $(STAMP)

install: $(STAMP) protos  ## create .venv and install everything (idempotent)

protos: $(STAMP)  ## generate the gRPC/protobuf Python code from protos/*.proto
	@$(PY) -c "import sys; from protos.build import main; sys.exit(main())"

test: install  ## run the test suite (fast; excludes slow/gpu/robot markers)
	@$(VENV)/bin/pytest $(ARGS)

test-all: install  ## run every test, including the slow ones
	@$(VENV)/bin/pytest -m "not gpu and not robot" $(ARGS)

test-gpu: install  ## the tests that need a CUDA GPU (fail without one)
	@$(VENV)/bin/pytest -m gpu $(ARGS)

test-robot: install  ## the tests on the real WidowX (robot PC, arm powered and homed)
	@$(VENV)/bin/pytest -m robot $(ARGS)

lint: install  ## ruff lint and format check
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: install  ## apply ruff fixes and formatting
	@$(VENV)/bin/ruff check --fix . ; $(VENV)/bin/ruff format .

bench: install  ## run the benchmarks (results: benchmarks/RESULTS.md)
	@$(PY) -m benchmarks.run $(ARGS)

up: install  ## start the cluster on PRESET (default sim-cpu); the phases run inside it
	@$(VENV)/bin/robofume up --preset $(PRESET) $(ARGS)

down: install  ## stop everything `make up` started
	@$(VENV)/bin/robofume down --preset $(PRESET) $(ARGS)

status: install  ## health of every component
	@$(VENV)/bin/robofume status --preset $(PRESET) $(ARGS)

actor: install  ## run the robot-side actor (robot PC): make actor PRESET=widowx
	@$(VENV)/bin/robofume actor --preset $(PRESET) $(ARGS)

clean:  ## remove generated code and caches (keeps data/ and runs/)
	rm -rf protos/*_pb2*.py .pytest_cache .ruff_cache
