# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.salus-installed
LEROBOT_STAMP := $(VENV)/.salus-lerobot-installed
PIP_FLAGS := --disable-pip-version-check -q
# LeRobot 0.4.4 pins torch<2.11, so it is installed --no-deps next to the dependencies that
# `from lerobot.policies.smolvla...` really imports (checked on a fresh venv; the rest of its
# requirements -- wandb, rerun-sdk, opencv, pynput, cmake, torchcodec -- are not needed for SmolVLA).
# torchvision's C++ ops do not load beside the CPU torch: salus.policies.smolvla works around it.
LEROBOT_VERSION := 0.4.4
LEROBOT_DEPS := 'transformers>=4.57.1,<5' 'huggingface-hub>=0.34.2,<0.36' 'draccus==0.10.0' 'num2words>=0.5.14,<0.6' \
	'einops>=0.8,<0.9' 'accelerate>=1.10,<2' 'datasets>=4,<5' 'diffusers>=0.27.2,<0.36' 'torchvision==0.28.0' \
	'av>=15,<16' 'pyserial>=3.5,<4' 'deepdiff>=7.0.1,<9' 'termcolor>=2.4,<4' 'jsonlines>=4,<5'

export OMP_NUM_THREADS ?= 1

.PHONY: all install install-lerobot system-deps demo test soak bench lint clean

all: test

$(PY):
	python3 -m venv $(VENV)
	$(PIP) $(PIP_FLAGS) install --upgrade pip

system-deps:
	@bash scripts/install_system_deps.sh

$(STAMP): $(PY) pyproject.toml constraints.txt Makefile scripts/install_system_deps.sh
	@bash scripts/install_system_deps.sh
	$(PIP) $(PIP_FLAGS) install torch==2.13.0
	$(PIP) $(PIP_FLAGS) install -c constraints.txt -e ".[dev,ray,pusht]"
	@touch $(STAMP)

install: $(STAMP)

$(LEROBOT_STAMP): $(STAMP)
	$(PIP) $(PIP_FLAGS) install -c constraints.txt $(LEROBOT_DEPS)
	$(PIP) $(PIP_FLAGS) install --no-deps lerobot==$(LEROBOT_VERSION)
	@touch $(LEROBOT_STAMP)

install-lerobot: $(LEROBOT_STAMP)

demo: $(STAMP) $(LEROBOT_STAMP)
	$(VENV)/bin/salus demo

# The suite in parallel, one worker per core (pytest-xdist), and the 15 slowest tests listed.
test: $(STAMP) $(LEROBOT_STAMP)
	$(PY) -m pytest -q -n auto --durations=15 tests

# The reliability property suite run long (random damage, kills and monitor faults; `make test`
# runs a short deterministic profile of it). SALUS_SOAK_EXAMPLES sets the examples per property.
soak: $(STAMP) $(LEROBOT_STAMP)
	SALUS_SOAK=1 SALUS_SOAK_EXAMPLES=$${SALUS_SOAK_EXAMPLES:-300} $(PY) -m pytest -q tests/reliability

bench: $(STAMP) $(LEROBOT_STAMP)
	@for f in bench/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench examples
	$(VENV)/bin/ruff format --check src tests bench examples
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
