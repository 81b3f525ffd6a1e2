# Two commands do all set-up on a fresh clone (with ../shared beside it):
#   make repro   environment + data + `dvc repro` (every figure, metric and report)
#   make test    environment + data + the test suite (pytest + nbval notebook runs)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: env data repro test lint bench lab clean-env

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: it takes the local CPU build; an unpinned torch pulls a multi-GB CUDA build
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

env: $(STAMP)

# only the raw data lives in the team remote (pipeline outputs are rebuilt by `dvc repro`, so a
# plain `dvc pull` fails); check-remote says where it looked for the remote when it is missing
data: env
	@$(BIN)/python -m matdiscovery.paths check-remote
	@$(BIN)/dvc pull --quiet data.dvc || { echo "error: dvc pull data.dvc failed; rerun it as 'dvc pull -v data.dvc' to see why" >&2; exit 1; }

repro: data
	$(BIN)/dvc repro

lint: env
	$(BIN)/ruff check src tests benchmarks

test: data lint
	$(BIN)/python -m pytest tests notebooks --nbval-lax -p no:cacheprovider

bench: env
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lab: data
	$(BIN)/jupyter lab notebooks/

clean-env:
	rm -rf $(VENV)
