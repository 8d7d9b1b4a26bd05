# Two commands: `make demo` (set up, then run p2m on the bundled example, offline) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test lint format bench clean chromium errors-doc doctor

# llama.cpp (the embedded teacher) built for any x86-64 with AVX2, with or without AVX-512 or AMX: pip's
# default build uses -march=native, and a wheel built so on a machine with AMX dies with SIGILL elsewhere
# (and on VMs that withhold AMX). pip's wheel cache ignores CMAKE_ARGS, so the wheel is built without it
# into a folder named by the version and these flags, and installed from there. Same version as pyproject.
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE   := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
  -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF \
  -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAVA_BUILD=OFF
LLAMA_WHEELS  := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/p2m/wheels/llama-cpp-python-$(LLAMA_VERSION)-$(shell uname -m)-$(shell echo '$(LLAMA_CMAKE)' | sha1sum | cut -c1-10)

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first: the CPU wheel on local disk (any other version pulls a multi-GB CUDA build)
	$(BIN)/python -m pip install -q torch==2.13.0
	@ls $(LLAMA_WHEELS)/*.whl >/dev/null 2>&1 || { echo "building llama-cpp-python $(LLAMA_VERSION) for any AVX2 CPU (a few minutes, once)"; \
	  rm -rf $(LLAMA_WHEELS).tmp; CMAKE_ARGS="$(LLAMA_CMAKE)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/python -m pip wheel -q --no-cache-dir \
	  --no-deps --no-binary llama-cpp-python "llama-cpp-python==$(LLAMA_VERSION)" -w $(LLAMA_WHEELS).tmp && mv $(LLAMA_WHEELS).tmp $(LLAMA_WHEELS); }
	$(BIN)/python -m pip install -q --force-reinstall --no-deps --no-index --find-links $(LLAMA_WHEELS) "llama-cpp-python==$(LLAMA_VERSION)"
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

# docs/errors.md is generated from the bad-input catalogue (tests/bad_inputs.py); a test fails when it drifts
errors-doc: setup
	$(BIN)/python -m tests.bad_inputs --write

doctor: setup
	$(BIN)/p2m doctor

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
