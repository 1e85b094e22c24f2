# Two commands on a fresh clone: `make demo` and `make test`. Both bootstrap .venv,
# install the project with the exact versions of constraints.txt (those the suite last passed
# on) and acquire the default model; finished steps are skipped. `make test-latest` runs the
# suite in .venv-latest on the newest versions pyproject.toml's ranges allow.
PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
PIP         := $(PY) -m pip
# torch/torchvision come from this machine's local wheel files; torchaudio from the registry.
TORCH_SPEC  ?= torch==2.14.1 torchvision==0.29.1 torchaudio==2.11.0
MODEL       ?= gemma3_270m
# the offline models the integration tests use; test-all adds the 1B+ models of the `big` tests
TEST_MODELS ?= gemma3_270m smollm2_135m whisper_base qwen25_coder_05b
BIG_MODELS  ?= qwen25_coder_15b
CONSTRAINTS := constraints.txt
STAMP       := $(VENV)/.semantic-hub-installed
TEST_STAMP  := $(VENV)/.semantic-hub-test-installed
PYTEST_ARGS ?=
comma       := ,

.PHONY: install install-test model demo four-models test test-all test-unit test-latest constraints bench clean-venv gpu-check

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml $(CONSTRAINTS) | $(PY)
	$(PIP) install -q -c $(CONSTRAINTS) $(TORCH_SPEC)
	$(PIP) install -q -c $(CONSTRAINTS) -e .
	touch $(STAMP)

# test extras, plus Ray for the local-Ray sweep test (hydra-ray-launcher's cloudpickle<3 pin is
# for its AWS launcher only, so it goes in without its dependencies)
$(TEST_STAMP): $(STAMP)
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[test]'
	$(PIP) install -q -c $(CONSTRAINTS) 'ray>=2.9' && $(PIP) install -q -c $(CONSTRAINTS) --no-deps 'hydra-ray-launcher>=1.2.2'
	touch $(TEST_STAMP)

install: $(STAMP)

install-test: $(TEST_STAMP)

model: install
	$(VENV)/bin/semantic-hub-models fetch $(MODEL)

demo: model
	$(VENV)/bin/semantic-hub experiment=demo

# the four-model sweep (README "Four real LMs"): 20 jobs in one process, model by model (each
# loaded once), then the cross-run report with depth.md; SWEEP_ARGS adds overrides
# (e.g. model.dtype=bfloat16, as in the measured run)
FOUR_MODELS ?= smollm2_135m,gemma3_270m,qwen25_coder_05b,qwen25_coder_15b
four-models: install
	$(VENV)/bin/semantic-hub-models fetch $(subst $(comma), ,$(FOUR_MODELS))
	$(VENV)/bin/semantic-hub -m model=$(FOUR_MODELS) \
	  experiment=scale_crosslingual,scale_latent_language,scale_arithmetic,scale_code,scale_wic \
	  hydra.sweep.dir=multirun/four_models $(SWEEP_ARGS)

test: $(TEST_STAMP)
	$(VENV)/bin/semantic-hub-models fetch $(TEST_MODELS)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# everything, the `big` tests too (pyproject's addopts leave them out of `make test` and CI)
test-all: $(TEST_STAMP)
	$(VENV)/bin/semantic-hub-models fetch $(TEST_MODELS) $(BIG_MODELS)
	$(PY) -m pytest -q -m "" $(PYTEST_ARGS)

# the newest versions the ranges allow, in a venv of its own (torch stays at TORCH_SPEC: the
# machine's local wheels); prints what it installed, then runs the whole suite
LATEST      := .venv-latest
test-latest:
	rm -rf $(LATEST) && $(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/pip install -q $(TORCH_SPEC)
	$(LATEST)/bin/pip install -q --upgrade -e '.[test]'
	$(LATEST)/bin/pip install -q --upgrade 'ray>=2.9' && $(LATEST)/bin/pip install -q --no-deps 'hydra-ray-launcher>=1.2.2'
	$(LATEST)/bin/pip freeze --exclude-editable | grep -iE '^(torch|transformers|accelerate|tokenizers|numpy|pandas|scipy|hydra-core|open.clip.torch|matplotlib)=='
	$(LATEST)/bin/semantic-hub-models fetch $(TEST_MODELS)
	$(LATEST)/bin/python -m pytest -q $(PYTEST_ARGS)

# rewrite constraints.txt from .venv after the suite passed there: a version change is a commit
constraints: $(TEST_STAMP)
	{ sed -n '1,3p' $(CONSTRAINTS); $(PIP) freeze --exclude-editable | grep -v '^-e'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

test-unit: $(TEST_STAMP)
	$(PY) -m pytest -q -m "not integration" $(PYTEST_ARGS)

# benchmarks: TransformerLens and nnsight (the [bench] extra) install beside the project without
# changing torch/transformers/numpy/hydra; run_all.py prints one table (logs in outputs/bench/)
BENCH_MODELS ?= gemma3_270m smollm2_135m
BENCH_ARGS  ?=
bench: install
	$(VENV)/bin/semantic-hub-models fetch $(BENCH_MODELS)
	$(PIP) install -q -e '.[bench]'
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

clean-venv:
	rm -rf $(VENV) $(LATEST)

# the big-model path on this machine (README "Big models"): CPU rows always, GPU rows with CUDA
gpu-check: install
	$(PY) -m benchmarks.gpu_check $(GPU_CHECK_ARGS)
