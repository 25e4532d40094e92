# The two front-door commands: `make run` and `make test`. Each sets up
# everything it needs on a fresh machine with only Python 3.11+ installed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test setup index browser eval eval-all bench clean help

help:
	@echo "make run    set up, build the index if missing or stale, start the web chat on http://127.0.0.1:7860"
	@echo "make test   set up (with a headless Chromium) and run the whole test suite and the evaluation gate"
	@echo "make eval   run the team's question set and write evals/runs/latest/summary.md"
	@echo "make eval-all  run every question set in evals/ and write evals/runs/all/summary.md (sets side by side)"
	@echo "make bench  run the benchmarks into bench-out/"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, pinned: 2.13.0 is the CPU build; an unpinned torch pulls GBs of CUDA.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

index: setup
	$(BIN)/knee-assistant index update

run: setup
	$(BIN)/python app.py

# Debian's Chromium for the browser tests (Playwright's own download cannot work here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }

test: setup browser
	$(BIN)/python -m pytest
	$(BIN)/knee-assistant index update
	$(BIN)/knee-assistant eval evals/questions.jsonl --out evals/runs/ci --no-progress \
	  --thresholds evals/thresholds.json

eval: setup
	$(BIN)/knee-assistant eval evals/questions.jsonl --out evals/runs/latest

eval-all: setup index
	$(BIN)/knee-assistant eval evals/questions.jsonl evals/heldout-*.jsonl --out evals/runs/all --no-progress

bench: setup
	$(BIN)/knee-assistant bench --out bench-out

clean:
	rm -rf $(VENV) index/gen-* index/CURRENT index/.tmp-* evals/runs bench-out test-output
