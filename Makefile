# Set-up and the two things a newcomer runs. Every target makes the virtual environment
# and fetches the data first, so each works on a fresh clone:
#   make run    the handout's whole command sequence, ending in the accuracy table
#   make test   the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA := wiki.txt birth_places_train.tsv birth_dev.tsv birth_test_inputs.tsv

.PHONY: run test setup data

run: setup
	$(BIN)/python handout.py

test: setup
	$(BIN)/python -m pytest -q tests

setup: $(VENV)/installed data

# beyond requirements.txt: pytest for the tests, matplotlib for the figures (optional: the
# rest of the code runs without it, and its tests are skipped where it is missing)
$(VENV)/installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt pytest matplotlib
	touch $@

data:
	$(BIN)/python get_data.py
