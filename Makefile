# edrfleet: `make demo` runs the main job, `make test` runs every test tier.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest

.PHONY: setup demo test test-unit test-kernel test-lab test-vm lint bench bench-deploy clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) scripts/demo.py

test: setup
	EDRFLEET_VM=1 $(PYTEST) -q -rs tests

test-unit: setup
	$(PYTEST) -q tests/unit

test-kernel: setup
	$(PYTEST) -q -rs tests/kernel

test-lab: setup
	$(PYTEST) -q -rs tests/lab

test-vm: setup
	EDRFLEET_VM=1 $(PYTEST) -q -rs -s --timeout 1800 tests/vm

lint: setup
	$(VENV)/bin/ruff check edrfleet tests bench scripts

bench: setup
	$(PY) bench/exec_overhead.py
	$(PY) bench/syscall_tax.py

bench-deploy: setup
	$(PY) bench/deploy.py --hosts 20

clean:
	@if [ -f .edrfleet/lab/state.json ] && [ -x $(PY) ]; then $(PY) -m edrfleet.cli.main lab down; fi
	rm -rf .edrfleet .pytest_cache .ruff_cache
