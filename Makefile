# cgnn_jax: `make demo` and `make test` set up .venv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= out/demo
DEMO_EVENTS ?= 2

.PHONY: demo test lint format bench fidelity train-stage1 train-test train-default evaluate diagnose graph-quality clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
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

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py --out=benchmarks/REPORT.md

# every training command resumes an interrupted run from its last checkpoint when re-run
train-stage1: $(STAMP)
	$(BIN)/python launch/train.py --config=configs/stage1.py --workdir=workdirs/stage1

# every stage at a toy size (about a minute): a smoke test of the whole training
train-test: $(STAMP)
	$(BIN)/python launch/train.py --config=configs/test.py --workdir=workdirs/test

# the pretrained default model (configs/default.py): stages 1-2, the GNN fine-tuned on a mix of
# densities with Split/Stop (configs/finetune_mix.py); then that GNN fine-tuned on full events
# (configs/finetune_dense.py: the dense variant, for events of >= 25,000 hits) and on 10 %-track
# events at a denser input graph (configs/finetune_sparse.py: for the other events); all copied
# into the package with the track extension along helix roads on (cluster/extend.py), Stop's cut
# chosen again per variant; 1 h 21 min here (2026-12-02), resumable
train-default: $(STAMP)
	$(BIN)/python launch/train.py --config=configs/default.py --workdir=workdirs/default \
	    "--config.stages=('stage1','stage2')"
	$(BIN)/python launch/train.py --config=configs/finetune_mix.py --workdir=workdirs/default_mix \
	    --config.stage1_checkpoint=workdirs/default --config.gnn.init_checkpoint=workdirs/default
	$(BIN)/python launch/train.py --config=configs/finetune_dense.py --workdir=workdirs/default_dense \
	    --config.stage1_checkpoint=workdirs/default --config.gnn.init_checkpoint=workdirs/default_mix \
	    "--config.stages=('stage1','stage2')"
	$(BIN)/python launch/train.py --config=configs/finetune_sparse.py --workdir=workdirs/default_sparse \
	    --config.stage1_checkpoint=workdirs/default --config.gnn.init_checkpoint=workdirs/default_mix \
	    "--config.stages=('stage1','stage2')"
	$(BIN)/python launch/export_model.py --workdir=workdirs/default_mix --gnn=workdirs/default_sparse \
	    --dense=workdirs/default_dense --dense_min_hits=25000 --input_threshold=0.005 \
	    --dense_input_threshold=0.05 --graph_approx=2.0 --extend_iterations=2 --tree_rows=atoms \
	    --calibrate_merge_events=2 --calibrate_stop_events=2

# the comparison table (thesis Table 3.2) and efficiency plots of the shipped model
evaluate: $(STAMP)
	$(BIN)/python launch/eval.py --events=2 --plots_dir=out/eval --json_out=out/eval/eval.json

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
