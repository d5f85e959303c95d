# Two entry points do all set-up on a fresh machine:
#   make run   -> venv, install, run the quickstart experiment
#   make test  -> venv, install with test extras, run the whole test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXPERIMENT ?= experiments/quickstart.yaml

.PHONY: run test install lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Torch is installed first and pinned so a fresh CPU machine takes the CPU build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[calibrate,ray,dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/acsim run $(EXPERIMENT)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 -q
	$(BIN)/python -m pytest -q -m alone

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/acsim bench

clean:
	rm -rf $(VENV) results .pytest_cache
