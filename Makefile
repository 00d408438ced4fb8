# edrfleet: `make demo` runs the main job, `make test` runs every test tier.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
# The test tiers' VM images (Debian 11/12/13, ~1.2 GB each, keyed by their recipe): one cache
# for every checkout of this machine, so a clean clone's CI finds them built by the last run.
export EDRFLEET_VM_CACHE ?= /var/cache/edrfleet/vm
# Every shell file of the repository: scripts, the host scripts deploy runs, the VM guest's.
SHELL_FILES = $(shell git ls-files -co --exclude-standard '*.sh' .ci/run)

.PHONY: setup setup-test demo test test-unit test-kernel test-lab test-vm test-matrix lint bench bench-deploy clean

setup:
	@bash scripts/setup.sh

# setup, and the tools only tests and lint use (shellcheck; chromium for the HTML report's
# rendering test; PostgreSQL for the report store's tests): `make demo` does without them.
setup-test:
	@bash scripts/setup.sh --test
	@bash scripts/setup-postgres.sh install

demo: setup
	$(PY) scripts/demo.py

# CI's run: every tier; molecule on the three releases (~25-45 min under TCG) is left to
# `make test-matrix` to keep CI within its budget (the lab tier runs the role over real SSH)
test: setup-test
	EDRFLEET_VM=1 $(PYTEST) -q -rs tests --deselect tests/vm/test_molecule.py

test-unit: setup-test
	$(PYTEST) -q tests/unit

test-kernel: setup
	$(PYTEST) -q -rs tests/kernel

test-lab: setup-test
	$(PYTEST) -q -rs tests/lab

test-vm: setup
	EDRFLEET_VM=1 $(PYTEST) -q -rs -s --timeout 3600 tests/vm

# the Debian 11/12/13 guests, the agreement subset and molecule on them (tests/vm/test_matrix*.py, test_molecule.py)
test-matrix: setup
	EDRFLEET_VM=1 $(PYTEST) -q -rs -s --timeout 3600 tests/vm/test_matrix.py tests/vm/test_matrix_agreement.py tests/vm/test_molecule.py

lint: setup-test
	$(VENV)/bin/ruff check edrfleet tests bench scripts
	shellcheck $(SHELL_FILES)

bench: setup
	$(PY) bench/exec_overhead.py
	$(PY) bench/syscall_tax.py

bench-deploy: setup
	$(PY) bench/deploy.py --hosts 20

clean:
	@if [ -f .edrfleet/lab/state.json ] && [ -x $(PY) ]; then $(PY) -m edrfleet.cli.main lab down; fi
	rm -rf .edrfleet .pytest_cache .ruff_cache
