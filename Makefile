# Two commands: `make demo` (set up, then run p2m on the bundled example, offline) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test lint format bench clean chromium

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first: the CPU wheel on local disk (any other version pulls a multi-GB CUDA build)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/p2m run -f examples/support_tickets.txt

# The browser tests drive the system Chromium (Playwright's own browser download is not used).
chromium:
	@command -v chromium >/dev/null || { if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q chromium; \
	  else echo "Chromium is missing: run 'sudo apt-get install chromium' (the browser tests skip without it)"; fi; }

test: setup chromium
	$(BIN)/ruff check agent tools memory p2m tests
	$(BIN)/ruff format --check agent tools memory p2m tests
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check agent tools memory p2m tests

format: setup
	$(BIN)/ruff check --fix agent tools memory p2m tests
	$(BIN)/ruff format agent tools memory p2m tests

bench: setup
	$(BIN)/p2m bench ../shared/bench-data/sst2 --out bench/out/sst2.json
	$(BIN)/p2m bench ../shared/bench-data/ag_news --out bench/out/ag_news.json
	$(BIN)/p2m bench ../shared/bench-data/e2e_nlg --no-retrieve --out bench/out/e2e_nlg.json
	$(BIN)/p2m bench bench/tasks/qa_passages --no-retrieve --examples 120 --out bench/out/qa_passages.json
	$(BIN)/p2m bench bench/tasks/python_snippets --no-retrieve --examples 120 --out bench/out/python_snippets.json
	$(BIN)/p2m index build --snapshot ../shared/hub-snapshot -q
	$(BIN)/p2m bench-search bench/search_queries.jsonl --out bench/out/search.json

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
