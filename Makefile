# moadepth: one-command set-up, demo and tests (GNU make).
#   make demo   bootstrap the venv and run the demo (scripts/demo.sh); SUPERVISION=photometric trains with no
#               depth in the loss (make passes command-line variables to the recipe's environment)
#   make test   bootstrap, colcon (Debian), ruff, pytest
#
# ROS_DISTRO, the variable a sourced ROS 2 sets, picks the ROS 2 wheels: jazzy (the default when
# unset) goes into .venv/, kilted into .venv-kilted/. .venv/ holds every pin (requirements.txt +
# requirements-ros-jazzy.txt). .venv-kilted/ holds only Kilted's ROS wheels (with what they pull
# in) and moadepth itself; it borrows .venv/'s other packages (torch, ...) through a .pth file,
# which puts them after its own site-packages on sys.path, so Kilted's rclpy is the one imported.
# A venv is (re)installed when its pins, setup.py, setup.cfg, package.xml or pyproject.toml changed
# since its last install (stamp file <venv>/.installed), and rebuilt from scratch, with a line
# saying so, when it holds another distro's ROS wheels (a .venv/ made before Jazzy was the default).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
LINT_PATHS := $(wildcard moadepth_core moadepth_ros test scripts)
PKG_FILES := setup.py setup.cfg package.xml pyproject.toml

ROS_DISTROS := jazzy kilted
ifeq ($(strip $(ROS_DISTRO)),)
override ROS_DISTRO := jazzy
endif
VENV_jazzy := .venv
VENV_kilted := .venv-kilted
BASE_VENV := $(VENV_jazzy)
VENV := $(VENV_$(ROS_DISTRO))
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Only targets that need no venv run under a ROS_DISTRO without wheels.
ifneq ($(filter-out help clean clean-outputs distclean,$(MAKECMDGOALS)),)
ifeq ($(filter $(ROS_DISTRO),$(ROS_DISTROS)),)
$(error ROS_DISTRO=$(ROS_DISTRO) has no ROS 2 wheels here: set ROS_DISTRO=jazzy (the default when unset) or ROS_DISTRO=kilted)
endif
endif

# The ROS wheels of another distro that venv $(2) holds, by their ros-<distro>-rclpy metadata.
other_distro_wheels = $(filter-out ros_$(1)_rclpy-%,$(notdir $(wildcard $(2)/lib/python3*/site-packages/ros_*_rclpy-*.dist-info)))
MIXED_jazzy := $(call other_distro_wheels,jazzy,$(VENV_jazzy))
MIXED_kilted := $(call other_distro_wheels,kilted,$(VENV_kilted))

# Network rule (docs/INSTALL.md): DDS discovery stays on this machine and every
# run gets a domain of its own. An already-set ROS_DOMAIN_ID is kept.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
ifeq ($(strip $(ROS_DOMAIN_ID)),)
ROS_DOMAIN_ID := $(shell echo $$(( RANDOM % 100 + 1 )))
endif
export ROS_DOMAIN_ID

.PHONY: help venv demo test test-ros lint colcon bench clean clean-outputs distclean FORCE

help:
	@echo "make demo       set up the venv and run the demo"
	@echo "make demo SUPERVISION=photometric   the demo with no depth in training (camera + /tf only): demo-output-photometric/"
	@echo "make test       set up the venv (+ colcon via apt when root), ruff, pytest"
	@echo "make test-ros   set up the venv and run only the tests that start rclpy (pytest -m ros)"
	@echo "make lint       ruff check"
	@echo "make bench      set up the venv and run scripts/bench (the benchmark)"
	@echo "make clean      remove build and test outputs (keeps the venvs and every trained model)"
	@echo "make clean-outputs  remove runs/, demo-output*/ and bench-results.json (lists them first)"
	@echo "make distclean  make clean, and also remove .venv/ and .venv-kilted/"
	@echo "ROS_DISTRO=jazzy (the default when unset; .venv/) or ROS_DISTRO=kilted (.venv-kilted/) picks ROS 2."

venv: $(STAMP)

# $(call fresh_venv,DISTRO[,VENV OPTIONS]): the distro's venv, removed first when it holds another
# distro's wheels.
define fresh_venv
	@if [ -n "$(MIXED_$(1))" ]; then \
	    echo "$(VENV_$(1))/ holds another ROS distro's wheels ($(MIXED_$(1))), not $(1)'s: removing it and installing afresh."; \
	    rm -rf $(VENV_$(1)); \
	fi
	test -x $(VENV_$(1))/bin/python || $(PYTHON) -m venv $(2) $(VENV_$(1))
endef

$(VENV_jazzy)/.installed: requirements.txt requirements-ros-jazzy.txt $(PKG_FILES) $(if $(MIXED_jazzy),FORCE)
	$(call fresh_venv,jazzy)
	$(VENV_jazzy)/bin/python -m pip install --upgrade --quiet pip
	$(VENV_jazzy)/bin/python -m pip install -r requirements.txt -r requirements-ros-jazzy.txt
	$(VENV_jazzy)/bin/python -m pip install --no-deps --no-build-isolation -e .
	echo jazzy > $@

# .venv-kilted/ has no pip or setuptools of its own (--without-pip): .venv/'s pip installs into it
# (--python) and, once the .pth is there, .venv/'s pip and setuptools serve it as they serve .venv/.
# Kilted's ROS closure is resolved with .venv/ out of sight (no .pth yet), so every ROS package,
# Python and native, lands in .venv-kilted/ itself; third-party packages it pulls in keep
# requirements.txt's versions (-c). Then the .pth adds .venv/'s site-packages behind its own.
$(VENV_kilted)/.installed: $(BASE_VENV)/.installed requirements.txt requirements-ros-kilted.txt $(PKG_FILES) $(if $(MIXED_kilted),FORCE)
	$(call fresh_venv,kilted,--without-pip)
	base=$$($(BASE_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))'); \
	own=$$($(VENV_kilted)/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))'); \
	[ "$${base##*/lib/}" = "$${own##*/lib/}" ] || { echo "$(VENV_kilted)/ ($$own) and $(BASE_VENV)/ ($$base) have different Pythons: make distclean, then make again." >&2; exit 1; }; \
	rm -f "$$own/moadepth_base_venv.pth"; \
	$(BASE_VENV)/bin/python -m pip --python $(VENV_kilted)/bin/python install -c requirements.txt -r requirements-ros-kilted.txt; \
	echo "$$base" > "$$own/moadepth_base_venv.pth"
	$(VENV_kilted)/bin/python -m pip install --no-deps --no-build-isolation -e .
	echo kilted > $@

FORCE:

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

lint: $(BASE_VENV)/.installed
	$(BASE_VENV)/bin/ruff check $(LINT_PATHS)

test: $(STAMP) colcon lint
	@echo "ROS_DISTRO=$(ROS_DISTRO) ($(VENV)/) ROS_DOMAIN_ID=$(ROS_DOMAIN_ID) ROS_AUTOMATIC_DISCOVERY_RANGE=$(ROS_AUTOMATIC_DISCOVERY_RANGE)"
	$(VPY) -m pytest -q --durations=15 test

# The tests that start rclpy or load ROS messages (marker `ros`): .ci/run runs them under the
# distro that `make test` did not use.
test-ros: $(STAMP)
	@echo "ROS_DISTRO=$(ROS_DISTRO) ($(VENV)/) ROS_DOMAIN_ID=$(ROS_DOMAIN_ID) ROS_AUTOMATIC_DISCOVERY_RANGE=$(ROS_AUTOMATIC_DISCOVERY_RANGE)"
	$(VPY) -m pytest -q -m ros test

demo: $(STAMP)
	MOADEPTH_VENV=$(VENV) bash scripts/demo.sh

bench: $(STAMP)
	$(VPY) -m pip install -q -r requirements-bench.txt
	$(VPY) scripts/bench $(BENCH_ARGS)

# clean: only what a build or a test run made (colcon's build/install/log, caches, egg-info).
# bench-results.json stays: it is a measurement `make bench` took minutes to produce, not a build
# output. What a user trained, recorded or measured (runs/, demo-output*/, bench-results.json) goes
# only with clean-outputs, which names it first.
# No prerequisite: cleaning must never create or install the venv.
clean:
	rm -rf build install log .pytest_cache .ruff_cache .hypothesis *.egg-info
	find . -path './.venv*' -prune -o -path ./.git -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf

OUTPUTS := $(wildcard runs demo-output demo-output-photometric bench-results.json)
clean-outputs:
	@if [ -z "$(OUTPUTS)" ]; then echo "clean-outputs: no runs/, demo-output*/ or bench-results.json to remove"; exit 0; fi; \
	echo "clean-outputs: removing what was trained, recorded or measured:"; \
	for d in $(OUTPUTS); do echo "  $$d ($$(du -sh $$d | cut -f1), $$(find $$d -name '*.pt' | wc -l) checkpoint(s))"; done; \
	rm -rf $(OUTPUTS)

distclean: clean
	rm -rf $(foreach d,$(ROS_DISTROS),$(VENV_$(d)))
