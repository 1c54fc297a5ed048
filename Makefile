# Two commands on a fresh machine: `make demo` and `make test`. Each creates or updates .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean venv promtool

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pulse demo $(ARGS)

test: $(STAMP) promtool
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

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy core evaluation stream kpis detectors alerting simulator pulse

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
