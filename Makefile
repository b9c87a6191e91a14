# Two commands do all the set-up on a fresh CPU machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU wheel on CPU machines; GPU users: install their CUDA torch into .venv first (see README), the
# check below then leaves it alone.
TORCH_SPEC ?= torch==2.13.0
# Every package's exact version (the runtime and the test extra; torch as TORCH_SPEC resolved here), from `make lock`.
LOCK := requirements/lock.txt
UV_VERSION ?= 0.13.9

.PHONY: install install-test demo event lint test clean-data help lock

help:
	@echo "make demo   - create .venv, install gwpe, run 'dvc repro' on the default profile"
	@echo "make test   - create .venv if missing, install with test extras, run ruff, lint-imports and pytest"
	@echo "make lock   - refresh requirements/lock.txt after editing pyproject.toml's dependencies (LOCK_UPGRADE=--upgrade: newest allowed releases)"
	@echo "make clean-data - remove the default pipeline's outputs (DVC cache and remote kept: dvc checkout restores them)"
	@echo "make event  - GW150914 from the shipped GWOSC files to a likelihood-checked posterior (not yet within its 60-min target on 2 cores: see README)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The lock without its torch line: torch is the rule below's (a GPU user's CUDA build stays), the rest is pinned.
$(VENV)/lock-no-torch.txt: $(LOCK) | $(BIN)/python
	sed '/^torch==/d' $(LOCK) > $@

$(VENV)/.torch: | $(BIN)/python $(VENV)/lock-no-torch.txt
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install $(TORCH_SPEC) -c $(VENV)/lock-no-torch.txt
	touch $@

# Exactly the locked versions (the test extra's tools included: one environment, one lock), then gwpe itself.
$(VENV)/.installed: pyproject.toml $(VENV)/lock-no-torch.txt $(VENV)/.torch
	$(BIN)/python -m pip install -r $(VENV)/lock-no-torch.txt
	$(BIN)/python -m pip install --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	bash scripts/install-system.sh
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# Refresh the lock after editing pyproject.toml's dependencies: versions already in it are kept where they still fit,
# `make lock LOCK_UPGRADE=--upgrade` takes the newest allowed releases. Then `make install` and `make test`.
lock: | $(BIN)/python
	$(VENV)/lock-tools/bin/uv --version 2>/dev/null | grep -q "^uv $(UV_VERSION) " || \
	    $(BIN)/python -m pip install --quiet --upgrade --target $(VENV)/lock-tools uv==$(UV_VERSION)
	echo "$(TORCH_SPEC)" | UV_CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/lock-tools/bin/uv pip compile \
	    pyproject.toml --extra test - --python-version 3.11 $(foreach d,$(PIP_FIND_LINKS),--find-links $(d)) \
	    $(LOCK_UPGRADE) --quiet -o $(LOCK)

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc push
	bash scripts/demo-baseline.sh
	@echo
	@echo "Done. Datasets: data/h22/{train,validation,test}.zarr, data/strain/strain-{5d,8d,hl}.zarr  metrics: metrics/ (dvc metrics show)"
	@echo "WaveNet: models/wavenet (registered as gwpe-wavenet), Table 1 in metrics/wavenet-eval.json, figures in plots/wavenet/"
	@echo "Flows: models/flows/{maf,cvae_plus} (gwpe-npe-maf, gwpe-npe-cvae-plus), p-p reports in metrics/flow-*-eval.json, plots/flows/"
	@echo "Distillation: optuna.db (sweep), models/distill/{teacher,student-*} (gwpe-teacher, gwpe-student), Table II in metrics/distill-eval.json"
	@echo "Look at the runs with:  $(BIN)/gwpe ui   (MLflow UI on http://127.0.0.1:5000)"
	@echo "Experiments: branch 'demo' holds the baseline; $(BIN)/dvc exp run -S flows.training.max_epochs=2 && $(BIN)/dvc exp show"

event: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro experiments/gw150914/dvc.yaml
	@echo
	@echo "Report: metrics/events/GW150914.json (gwpe event analyse prints it), result files in data/events/GW150914/posterior/"
	@echo "Figures: plots/events/GW150914/; model: models/events/gw150914 (registered as gwpe-npe-gw150914)"

lint: install-test
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/lint-imports

test: lint
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

# The default profile's pipeline outputs (params.yaml paths). Shipped inputs (data/gwosc), the DVC cache and remote,
# mlflow.db and optuna.db (the experiment history) stay: `dvc checkout` brings the outputs back, `dvc repro` rebuilds.
clean-data:
	rm -rf data/h22 data/strain data/reference data/sampling models/wavenet models/flows models/distill models/sweep \
	       checkpoints/wavenet checkpoints/flows checkpoints/distill metrics plots
	@echo "removed the default pipeline's outputs; 'dvc checkout' restores them from the cache, 'dvc repro' rebuilds"
