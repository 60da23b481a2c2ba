# moadepth: one-command set-up, demo and tests (GNU make).
#   make demo   bootstrap .venv/ and run the demo (scripts/demo.sh)
#   make test   bootstrap, colcon (Debian), ruff, pytest
# .venv/ is (re)installed only when requirements.txt, setup.py, setup.cfg or
# package.xml changed since the last install (stamp file .venv/.installed).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LINT_PATHS := $(wildcard moadepth_core moadepth_ros test scripts)

# Network rule (docs/INSTALL.md): DDS discovery stays on this machine and every
# run gets a domain of its own. An already-set ROS_DOMAIN_ID is kept.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
ifeq ($(strip $(ROS_DOMAIN_ID)),)
ROS_DOMAIN_ID := $(shell echo $$(( RANDOM % 100 + 1 )))
endif
export ROS_DOMAIN_ID

.PHONY: help venv demo test lint colcon bench clean clean-outputs distclean

help:
	@echo "make demo       set up .venv/ and run the demo"
	@echo "make test       set up .venv/ (+ colcon via apt when root), ruff, pytest"
	@echo "make lint       ruff check"
	@echo "make bench      set up .venv/ and run scripts/bench (the benchmark)"
	@echo "make clean      remove build and test outputs (keeps .venv/ and every trained model)"
	@echo "make clean-outputs  remove runs/, demo-output/ and bench-results.json (lists them first)"
	@echo "make distclean  make clean, and also remove .venv/"

venv: $(STAMP)

$(VPY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt setup.py setup.cfg package.xml pyproject.toml | $(VPY)
	$(VPY) -m pip install --upgrade --quiet pip
	$(VPY) -m pip install -r requirements.txt
	$(VPY) -m pip install --no-deps --no-build-isolation -e .
	touch $@

# Debian's colcon, used only by test/test_packaging.py to check the ament_python layout.
colcon:
	@if command -v colcon >/dev/null 2>&1; then \
	    echo "colcon: $$(command -v colcon)"; \
	elif [ "$$(id -u)" != 0 ]; then \
	    echo "NOTE: colcon is not installed and this is not root: the colcon build test will be skipped."; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	    echo "NOTE: colcon is not installed and apt-get is missing: the colcon build test will be skipped."; \
	else \
	    echo "Installing Debian's colcon (apt-get)..."; \
	    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	            colcon python3-colcon-ros python3-ament-package >/dev/null; }; then \
	        echo "NOTE: apt-get could not install colcon: the colcon build test will be skipped."; \
	    fi; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)

test: $(STAMP) colcon lint
	@echo "ROS_DOMAIN_ID=$(ROS_DOMAIN_ID) ROS_AUTOMATIC_DISCOVERY_RANGE=$(ROS_AUTOMATIC_DISCOVERY_RANGE)"
	$(VPY) -m pytest -q test

demo: $(STAMP)
	bash scripts/demo.sh

bench: $(STAMP)
	$(VPY) -m pip install -q -r requirements-bench.txt
	$(VPY) scripts/bench $(BENCH_ARGS)

# clean: only what a build or a test run made (colcon's build/install/log, caches, egg-info).
# bench-results.json stays: it is a measurement `make bench` took minutes to produce, not a build
# output. What a user trained, recorded or measured (runs/, demo-output/, bench-results.json) goes
# only with clean-outputs, which names it first.
# No prerequisite: cleaning must never create or install the venv.
clean:
	rm -rf build install log .pytest_cache .ruff_cache .hypothesis *.egg-info
	find . -path ./$(VENV) -prune -o -path ./.git -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf

OUTPUTS := $(wildcard runs demo-output bench-results.json)
clean-outputs:
	@if [ -z "$(OUTPUTS)" ]; then echo "clean-outputs: no runs/, demo-output/ or bench-results.json to remove"; exit 0; fi; \
	echo "clean-outputs: removing what was trained, recorded or measured:"; \
	for d in $(OUTPUTS); do echo "  $$d ($$(du -sh $$d | cut -f1), $$(find $$d -name '*.pt' | wc -l) checkpoint(s))"; done; \
	rm -rf $(OUTPUTS)

distclean: clean
	rm -rf $(VENV)
