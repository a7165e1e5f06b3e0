# Two commands on a fresh machine: `make demo` (analyse the demo experiments) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOME_DIR ?= .jetstream_home
CLIENTS ?= 100000

.PHONY: setup demo test ui bench clean

$(BIN)/jetstream-assets: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

setup: $(BIN)/jetstream-assets

demo: setup
	$(BIN)/jetstream-assets demo --home $(HOME_DIR) --clients $(CLIENTS)

test: setup
	$(BIN)/python -m pytest -n 2 -q

ui: setup
	JETSTREAM_SENSOR_INTERVAL_SECONDS=30 JETSTREAM_HOME=$(abspath $(HOME_DIR)) DAGSTER_HOME=$(abspath $(HOME_DIR))/dagster $(BIN)/dagster dev -w workspace.yaml

bench: setup
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf $(VENV) $(HOME_DIR)
