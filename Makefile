# Two commands on a fresh machine: `make run` and `make test` (see README.md).
# Every target installs what it needs into .venv/ in the repo root first.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
INCIDENT ?= fixtures/incidents/route-downtown
OUT    ?= out/$(notdir $(INCIDENT))
PYTEST_ARGS ?=

CONSOLE_ASSETS := broker/console/static/vendor/.built
CONSOLE_PORT ?= 8765
ROADS ?= fixtures/roads/charlotte-uptown.geojson

.PHONY: install run console console-assets browser test unit lint bench faults fixtures kafka-start kafka-stop clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,sim]"
	@touch $(STAMP)

install: $(STAMP)

## the console's front-end libraries: npm ci of the pinned lock, vendored into the package
$(CONSOLE_ASSETS): broker/console/frontend/package-lock.json scripts/console-assets
	scripts/console-assets
	@touch $(CONSOLE_ASSETS)

console-assets: $(CONSOLE_ASSETS)

## Debian's chromium for the browser tests (apt-get when missing; fails loudly if it cannot)
browser:
	scripts/browser

## make run: replay the default incident in-process (no Kafka), print alerts, write a map picture
run: $(STAMP)
	$(BIN)/python -m broker replay $(INCIDENT) --out $(OUT)

## make console: the operator console's incident player on the default incident (docs/console.md)
console: $(STAMP) $(CONSOLE_ASSETS)
	$(BIN)/python -m broker replay $(INCIDENT) --roads $(ROADS) --out $(OUT) --show 0 \
		--serve --port $(CONSOLE_PORT)

## make test: lint, layer contracts, type check, then every test (unit, property, integration
## on a real Kafka it starts itself). Everything is installed here, so a test that skips fails
## (EV_TESTS_NO_SKIP, tests/no_skip.py).
test: lint $(CONSOLE_ASSETS) browser
	EV_TESTS_NO_SKIP=1 scripts/with-kafka $(BIN)/python -m pytest $(PYTEST_ARGS)

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

## make faults: the fault-injection suite (docs/reliability.md) on its own Kafka (port
## FAULTS_KAFKA_PORT, stopped and restarted by one scenario, so below the ephemeral port range),
## real worker processes, real partners on 127.0.0.1; ~25 min on 2 cores. Writes
## docs/reliability.md and tests/faults/results.json. QUICK=1: 10 s faults;
## ONLY="partner_down worker_kill9": some scenarios (both write to out/faults/).
FAULTS_KAFKA_PORT ?= 25092
faults: $(STAMP)
	$(BIN)/python -m tests.faults --kafka-port $(FAULTS_KAFKA_PORT) $(if $(QUICK),--quick,) \
		$(foreach s,$(ONLY),--only $(s))

## make fixtures: regenerate every fixture (deterministic: byte-identical output)
fixtures: $(STAMP)
	$(BIN)/python fixtures/generate.py

kafka-start:
	scripts/kafka start

kafka-stop:
	scripts/kafka stop

clean:
	rm -rf out .pytest_cache .ruff_cache .hypothesis
