# cgnn_jax: `make demo` and `make test` set up .venv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= out/demo
DEMO_EVENTS ?= 2

.PHONY: demo test lint format lock bench fidelity train-stage1 train-test train-default train-thesis reexport evaluate diagnose graph-quality clean

# the versions of requirements-lock.txt (those the suite passed with); requirements.txt and
# pyproject.toml hold the floors a library user needs
$(STAMP): requirements.txt requirements-dev.txt requirements-lock.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt -c requirements-lock.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python launch/demo.py --out=$(DEMO_DIR) --events=$(DEMO_EVENTS)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check cgnn_jax launch tests benchmarks configs
	$(BIN)/ruff format --check cgnn_jax launch tests benchmarks configs

format: $(STAMP)
	$(BIN)/ruff format cgnn_jax launch tests benchmarks configs
	$(BIN)/ruff check --fix cgnn_jax launch tests benchmarks configs

# requirements-lock.txt from .venv (after the suite passed on upgraded packages)
lock: $(STAMP)
	{ sed -n '/^#/p' requirements-lock.txt; $(BIN)/python -m pip freeze --exclude-editable \
	    | grep -viE '^(pip|setuptools)=='; } > requirements-lock.txt.tmp
	mv requirements-lock.txt.tmp requirements-lock.txt

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py --out=benchmarks/REPORT.md

# every training command resumes an interrupted run from its last checkpoint when re-run
train-stage1: $(STAMP)
	$(BIN)/python launch/train.py --config=configs/experiments/stage1.py --workdir=workdirs/stage1

# every stage at a toy size (about a minute): a smoke test of the whole training
train-test: $(STAMP)
	$(BIN)/python launch/train.py --config=configs/test.py --workdir=workdirs/test

# the pretrained default model, all of it in configs/default.py: stages 1-2 (step stage12: the
# embedding, the module map built from 300 simulated events, the edge filter and its first pass,
# the GNN), the GNN fine-tuned on a mix of densities with Split/Stop (mix), that GNN fine-tuned on
# full events (dense: the dense variant) and on 10 %-track events (sparse), then the export with
# the inference settings and calibrations of configs/default.py:export; under 2 h on 2 CPU
# cores, resumable
DEFAULT_WD ?= workdirs/default
train-default: $(STAMP)
	$(BIN)/python launch/train.py --config=configs/default.py:stage12 --workdir=$(DEFAULT_WD)
	$(BIN)/python launch/train.py --config=configs/default.py:mix --workdir=$(DEFAULT_WD)_mix \
	    --config.stage1_checkpoint=$(DEFAULT_WD) --config.gnn.init_checkpoint=$(DEFAULT_WD)
	$(BIN)/python launch/train.py --config=configs/default.py:dense --workdir=$(DEFAULT_WD)_dense \
	    --config.stage1_checkpoint=$(DEFAULT_WD) --config.gnn.init_checkpoint=$(DEFAULT_WD)_mix
	$(BIN)/python launch/train.py --config=configs/default.py:sparse --workdir=$(DEFAULT_WD)_sparse \
	    --config.stage1_checkpoint=$(DEFAULT_WD) --config.gnn.init_checkpoint=$(DEFAULT_WD)_mix
	$(BIN)/python launch/export_model.py --config=configs/default.py:export \
	    --workdir=$(DEFAULT_WD)_mix --gnn=$(DEFAULT_WD)_sparse --dense=$(DEFAULT_WD)_dense

# the thesis's own configuration (configs/thesis.py): Split/Stop on every hit, no atoms, no layer
# merge, no extension, trained on the shipped stage 1 and GNN, then end to end (~3 min)
THESIS_WD ?= workdirs/thesis
train-thesis: $(STAMP)
	$(BIN)/python launch/train.py --config=configs/thesis.py --workdir=$(THESIS_WD)

# the shipped model re-exported from itself with configs/default.py:export (its inference settings
# set again, every calibration re-run on the validation events: ~5 min) into REEXPORT_DIR; its
# submissions are byte-identical to the shipped model's (launch/reconstruct.py --checkpoint=...)
REEXPORT_DIR ?= out/reexport
reexport: $(STAMP)
	$(BIN)/python launch/export_model.py --config=configs/default.py:export \
	    --workdir=cgnn_jax/pretrained/default --out=$(REEXPORT_DIR)

# the comparison table (thesis Table 3.2) and efficiency plots of the shipped model
evaluate: $(STAMP)
	$(BIN)/python launch/eval.py --events=2 --real --plots_dir=out/eval --json_out=out/eval/eval.json

# where the model loses its score: stage ceilings on unseen simulated events (launch/diagnose.py);
# DIAG_FRACTION=1 for full mu = 200 events (~1 min each)
DIAG_FRACTION ?= 0.1
diagnose: $(STAMP)
	$(BIN)/python launch/diagnose.py --events=2 --fraction=$(DIAG_FRACTION) --json_out=out/diagnose/diagnose.json

graph-quality: $(STAMP)
	$(BIN)/python launch/graph_quality.py --events=2

fidelity: $(STAMP)
	$(BIN)/python benchmarks/sim_fidelity.py --events=5 --rough_events=10 --score_events=5
	$(BIN)/python benchmarks/sim_vs_real.py --top=40 --md_out=out/fidelity/sim_vs_real.md \
	    --json_out=out/fidelity/sim_vs_real.json

clean:
	rm -rf $(VENV) out .pytest_cache
