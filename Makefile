# Set-up, demo and tests. `make demo` and `make test` are the README's first two commands.
# torch is installed first and then pinned through a constraints file for the rest of the install,
# so a CPU machine never pulls the CUDA wheels. If the venv already has a torch (e.g. made with
# VENV_FLAGS=--system-site-packages on a cluster with a CUDA torch), that torch is kept.
VENV ?= .venv
VENV_FLAGS ?=
TORCH ?= torch==2.13.0
EXTRAS ?= dev,eval,slurm,bench
PY := $(VENV)/bin/python

.PHONY: setup demo test bench clean-runs

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV_FLAGS) $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip freeze | grep -i '^torch[=@ ]' > $(VENV)/constraints.txt
	$(PY) -m pip install -q -c $(VENV)/constraints.txt -e ".[$(EXTRAS)]"
	touch $@

# SFT v3 starts from the tiny world's own DUS + CPT model (the `solar_10_7b` role at scale=tiny),
# so the demo first produces those parents unless they exist.
RUNS ?= $(or $(SOLAR_RUNS),runs)
demo: setup
	test -f $(RUNS)/tiny/dus/model/config.json || $(PY) -m solar.upscale scale=tiny upscale.progress=false
	test -f $(RUNS)/tiny/cpt/model/config.json || $(PY) -m solar.train +ablation=cpt scale=tiny
	$(PY) -m solar.train +ablation=sft_v3 scale=tiny

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/sft_throughput.py
