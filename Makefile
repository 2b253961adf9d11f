# pulsecast — set-up on a fresh machine is `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: help install system-deps setup up down status demo test test-unit test-integration \
        lint typecheck bench bench-e2e clean

help:  ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# cfn-lint and checkov live apart: checkov's dependencies conflict with pulsecast's.
IAC_VENV  := .venv-iac
IAC_STAMP := $(IAC_VENV)/.installed-$(shell cat infra/requirements-iac.txt | sha1sum | cut -c1-12)

$(IAC_STAMP): infra/requirements-iac.txt
	$(PYTHON) -m venv $(IAC_VENV)
	$(IAC_VENV)/bin/pip install --quiet --upgrade pip
	$(IAC_VENV)/bin/pip install --quiet -r infra/requirements-iac.txt
	rm -f $(IAC_VENV)/.installed-*
	touch $(IAC_STAMP)

install: $(STAMP) $(IAC_STAMP)  ## Create .venv (pulsecast, dev tools) and .venv-iac (cfn-lint, checkov)

system-deps:  ## Install missing system packages (Java 17, Maven, kcat) with apt-get
	@scripts/system-deps.sh

setup: install system-deps  ## Everything above, then resolve the JVM artifacts of jvm/pom.xml
	$(BIN)/pulsecast setup

up: setup  ## Start the local stack
	$(BIN)/pulsecast up

down:  ## Stop the local stack
	$(BIN)/pulsecast down

status:  ## Show the local stack
	$(BIN)/pulsecast status

demo: setup  ## Start the stack and run the main job
	$(BIN)/pulsecast demo

test: setup lint  ## Lint, then the whole test suite (unit, then integration on real servers)
	$(BIN)/pytest tests

test-unit: install  ## Unit tests only (no servers)
	$(BIN)/pytest tests/unit

test-integration: setup  ## Integration tests only
	$(BIN)/pytest tests/integration

lint: install  ## ruff and mypy
	$(BIN)/ruff check src tests
	$(BIN)/mypy

bench: setup  ## Ingest benchmark, one JSON line appended to benchmarks/results/ingest.jsonl
	@mkdir -p benchmarks/results
	$(BIN)/pulsecast bench ingest --json | tee -a benchmarks/results/ingest.jsonl

bench-e2e: setup  ## Streaming job benchmark (about 10 minutes), one JSON line appended to benchmarks/results/e2e.jsonl
	@mkdir -p benchmarks/results
	$(BIN)/pulsecast bench e2e --rate 10000 --seconds 90 --latency-rate 10000 --json | tee -a benchmarks/results/e2e.jsonl

clean:  ## Stop the stack and remove local state (keeps .venv)
	-$(BIN)/pulsecast down
	rm -rf .pulsecast
