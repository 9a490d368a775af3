# Two commands on a fresh machine: `make run` and `make test` (see README.md).
# Every target installs what it needs into .venv/ in the repo root first.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
INCIDENT ?= fixtures/incidents/route-downtown
OUT    ?= out/$(notdir $(INCIDENT))
PYTEST_ARGS ?=

.PHONY: install run test unit lint bench fixtures kafka-start kafka-stop clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,sim]"
	@touch $(STAMP)

install: $(STAMP)

## make run: replay the default incident in-process (no Kafka), print alerts, write a map picture
run: $(STAMP)
	$(BIN)/broker replay $(INCIDENT) --out $(OUT)

## make test: lint, layer contracts, type check, then every test (unit, property, integration
## on a real Kafka it starts itself)
test: lint
	scripts/with-kafka $(BIN)/python -m pytest $(PYTEST_ARGS)

## make unit: the pure tests only (no Kafka, no SUMO)
unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

## make lint: ruff, the three floors (import-linter contracts in pyproject.toml), mypy
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

## make bench: benchmarks on their own Kafka (port BENCH_KAFKA_PORT), < 5 min on 2 cores;
## FULL=1 runs longer and profiles too. Writes bench/results.json and docs/benchmarks.md.
BENCH_KAFKA_PORT ?= 49092
bench: $(STAMP)
	EV_KAFKA_PORT=$(BENCH_KAFKA_PORT) EV_KAFKA_CONTROLLER_PORT=$$(( $(BENCH_KAFKA_PORT) + 1 )) \
		scripts/with-kafka $(BIN)/python -m bench.run $(if $(FULL),--full,)

## make fixtures: regenerate every fixture (deterministic: byte-identical output)
fixtures: $(STAMP)
	$(BIN)/python fixtures/generate.py

kafka-start:
	scripts/kafka start

kafka-stop:
	scripts/kafka stop

clean:
	rm -rf out .pytest_cache .ruff_cache .hypothesis
