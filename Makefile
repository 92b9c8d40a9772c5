# The two commands of the README. Each creates the virtual environment on first use.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
CORES ?= all

.PHONY: demo test lint dry-run study lock testbed testbed-15b

# Installs exactly the versions of requirements.lock (torch is its CPU build, from local disk).
$(VENV)/.installed: pyproject.toml requirements.lock
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q pip==25.3   # the conda envs' pip
	$(PYTHON) -m pip install -q -c requirements.lock -e '.[test,slurm]'
	touch $@

# Re-resolves every dependency, transitive ones included, to today's releases; then the conda
# envs follow. Run it after editing pyproject.toml's dependencies, or to take new releases.
lock:
	python3 -m venv .venv-lock
	.venv-lock/bin/python -m pip install -q pip-tools==7.7.0
	.venv-lock/bin/pip-compile -q --extra test --extra slurm --strip-extras --allow-unsafe \
	  --no-emit-index-url --no-emit-find-links --upgrade -o requirements.lock pyproject.toml
	python3 envs/pin_from_lock.py

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
	studies/cpu_study.sh config/cpu-study.yaml data/studies/cpu-qwen05b

# The testbed (config/testbed.yaml, then its traffic regime config/testbed-traffic.yaml), each
# in a checkout of its own that outlasts the session (studies/study_checkout.sh); hours on 2 cores.
testbed: $(VENV)/.installed
	studies/study_checkout.sh config/testbed.yaml data/studies/testbed-qwen05b
	studies/study_checkout.sh config/testbed-traffic.yaml data/studies/testbed-traffic

# The testbed's second model, Qwen2.5-Coder-1.5B-Instruct on 10 slices (config/testbed-15b.yaml).
testbed-15b: $(VENV)/.installed
	studies/study_checkout.sh config/testbed-15b.yaml data/studies/testbed-qwen15b
