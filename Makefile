# Two commands on a fresh machine: `make demo` and `make test`. Each creates or updates .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test lint bench clean venv promtool chromium

venv: $(STAMP)

# The demo's dependencies only; the test tools come with `make test` (TEST_STAMP). pip prints
# what it collects and installs (a fresh machine takes a minute or two), not --quiet.
# setuptools' notice on every editable install ("Editable installation. Please be careful with
# folders ... with the same name as your package") is not for users: filtered by its text only.
QUIET_EDITABLE := PYTHONWARNINGS="ignore:Editable installation"
$(STAMP): pyproject.toml
	@echo "setting up $(VENV): Pulse and its dependencies (a minute or two on a fresh machine)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --progress-bar on pip
	$(QUIET_EDITABLE) $(BIN)/python -m pip install --progress-bar on -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP) pyproject.toml
	@echo "adding the test tools to $(VENV)"
	$(QUIET_EDITABLE) $(BIN)/python -m pip install --progress-bar on -e '.[test]'
	touch $(TEST_STAMP)

demo: $(STAMP)
	$(BIN)/pulse demo $(ARGS)

test: $(TEST_STAMP) promtool chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# tests/test_deploy.py and tests/test_prometheus.py need promtool and prometheus (Debian package
# `prometheus`, needs root); a no-op once promtool is on the PATH.
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "installing the Debian package prometheus (promtool, prometheus) for the tests"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends prometheus; } >.apt-prometheus.log 2>&1 \
	  || { cat .apt-prometheus.log; rm -f .apt-prometheus.log; exit 1; }; \
	  rm -f .apt-prometheus.log; }

# tests/test_page.py drives Debian's chromium through Playwright (never a downloaded browser);
# a no-op once /usr/bin/chromium is there.
chromium:
	@test -x /usr/bin/chromium || { \
	  echo "installing the Debian package chromium for the page test"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends chromium; } >.apt-chromium.log 2>&1 \
	  || { cat .apt-chromium.log; rm -f .apt-chromium.log; exit 1; }; \
	  rm -f .apt-chromium.log; }

# Tests against real Apache Kafka (tests/real_kafka/; plain `make test` does not collect them):
# the broker's jars come from Maven Central (deploy/kafka/pom.xml) into .kafka/, then KRaft
# brokers run from them (deploy/kafka/cluster.py). Needs java 17+ and mvn: installed from
# Debian when missing. The version is KAFKA_VERSION in deploy/kafka/cluster.py (3.9.1).
.PHONY: test-kafka kafka-jars
kafka-jars: $(TEST_STAMP)
	@{ command -v java && command -v mvn; } >/dev/null 2>&1 || { \
	  echo "installing the Debian packages openjdk-17-jre-headless and maven for real Kafka"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends openjdk-17-jre-headless maven; } >.apt-kafka.log 2>&1 \
	  || { cat .apt-kafka.log; rm -f .apt-kafka.log; exit 1; }; \
	  rm -f .apt-kafka.log; }
	$(BIN)/python deploy/kafka/cluster.py fetch

test-kafka: kafka-jars
	PULSE_REAL_KAFKA=1 $(BIN)/python -m pytest tests/real_kafka -s --timeout 900 \
	  --durations=0 $(PYTEST_ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy core evaluation stream kpis detectors alerting simulator pulse assistant dashboard

bench: $(TEST_STAMP)
	$(BIN)/python -m bench $(ARGS)

# The fault matrix of issue 19 (bench/faults/): bench/faults.json and docs/faults.md. A
# measurement, not a test; ARGS="--only kill-backlog,slack-429 --soak-minutes 0" re-runs rows.
# The soak runs on a single-node Apache Kafka (kafka-jars; ARGS="--soak-broker embedded": not).
.PHONY: faults
faults: kafka-jars
	$(BIN)/python -m bench.faults $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
