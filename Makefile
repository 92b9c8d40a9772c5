# The two commands of the README. Each creates the virtual environment on first use.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
CORES ?= all

.PHONY: demo test lint dry-run study

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q torch==2.13.0   # CPU build; pin it before anything pulls torch
	$(PYTHON) -m pip install -q -e '.[test,slurm]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/snakemake --cores $(CORES)

test: $(VENV)/.installed
	$(VENV)/bin/pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/snakefmt --check Snakefile workflow/rules
	$(VENV)/bin/snakemake --lint

dry-run: $(VENV)/.installed
	$(VENV)/bin/snakemake -n

# The CPU study: Qwen2.5-Coder-0.5B-Instruct on the ten paper benchmarks (config/cpu-study.yaml)
# through llama-server, exported to data/studies/cpu-qwen05b. Needs ../shared/benchmarks.
study: $(VENV)/.installed
	bench/cpu_study.sh config/cpu-study.yaml data/studies/cpu-qwen05b
