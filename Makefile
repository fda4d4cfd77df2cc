# clickstream: two commands on a fresh machine.
#   make demo   install what is missing, run the whole pipeline with simulated shoppers
#   make test   the full test suite (lint, types, unit, integration, end to end)
SHELL := /bin/bash
.DEFAULT_GOAL := help

STATE ?= $(CURDIR)/.state
export CLICKSTREAM_STATE_DIR := $(STATE)
export UV_PYTHON := 3.11
# kinesis-mock (BUS=kinesis) takes about 150 records/s on a busy 2-core machine.
RATE ?= $(if $(filter kinesis,$(BUS)),50,200)
DURATION ?= 0
# The bus between collector and processor: kafka or kinesis (kinesis-local; docs/aws.md).
BUS ?= kafka
PYTEST_ARGS ?=

# uv comes from PyPI via local/bootstrap.sh; use it from wherever pip put it.
UV = $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
RUN = $(UV) run --frozen --all-packages

.PHONY: help bootstrap sync up demo down status dag lint typecheck test test-unit evaluate-anomalies \
	duplicates-check

help:
	@echo "make demo    - install, start everything, simulate shoppers, show live figures (Ctrl-C stops)"
	@echo "               BUS=kinesis: Kinesis (kinesis-local) instead of Kafka between collector and processor"
	@echo "make up      - install and start the platform and services; prints connection info"
	@echo "make status  - what runs, and the connection info"
	@echo "make down    - stop everything that was started"
	@echo "make dag DAG=<id> [CONF='{...}'] - run one Airflow DAG against the running stack"
	@echo "make test    - lint, type checks and the whole test suite"
	@echo "make evaluate-anomalies - score the anomaly detector on seeded incidents"

bootstrap:
	@bash local/bootstrap.sh
	@bash local/deploy-tools.sh
	@$(MAKE) --no-print-directory sync

sync:
	@$(UV) sync --frozen --all-packages --quiet

up: bootstrap
	@$(RUN) python -m clickstream_local up --services --bus $(BUS)

demo: bootstrap
	@$(RUN) python -m clickstream_local demo --rate $(RATE) --duration $(DURATION) --bus $(BUS)

down:
	@if [ -x .venv/bin/python ]; then .venv/bin/python -m clickstream_local down; \
	else echo "nothing to stop (no .venv)"; fi

status:
	@.venv/bin/python -m clickstream_local status

# The batch DAGs (docs/orchestration.md), e.g. make dag DAG=clickstream_data_quality
DAG ?= clickstream_data_quality
CONF ?= {}
dag:
	@.venv/bin/python -m clickstream_local dag $(DAG) --conf '$(CONF)'

# The anomaly detector's incident evaluation (docs/anomaly-detection.md): the service's model
# beside the static-threshold baseline on 8 seeds, two at a time; exits 1 if the targets are
# not met. ANOMALY_EVAL_ARGS="--models seasonal,rolling,river,static" compares every candidate.
ANOMALY_EVAL_ARGS ?= --seeds 8 --jobs 2 --models seasonal,static
evaluate-anomalies: sync
	$(RUN) python -m anomaly_detector.evaluation $(ANOMALY_EVAL_ARGS) --json .state/anomaly-evaluation.json

lint:
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) python -m clickstream_common.config_docs --check

# Every pair the `duplicates` tool lists is explained in docs/design-decisions.md (a tool of
# the development machines, so not part of lint: CI is not known to have it).
duplicates-check:
	$(RUN) python tests/duplicates_explained.py

typecheck:
	$(RUN) mypy libs/*/src services/*/src tools/*/src local/src orchestration/src

test-unit: bootstrap lint typecheck
	$(RUN) pytest -m "not platform" $(PYTEST_ARGS)

# pytest exits 5 when it collected nothing; make turns any non-zero into a failure.
test: bootstrap lint typecheck
	$(RUN) pytest $(PYTEST_ARGS)
