# cgnn_jax: `make demo` and `make test` set up .venv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= out/demo
DEMO_EVENTS ?= 2

.PHONY: demo test lint format bench fidelity train-stage1 train-default evaluate graph-quality clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python launch/demo.py --out=$(DEMO_DIR) --events=$(DEMO_EVENTS)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check cgnn_jax launch tests benchmarks configs
	$(BIN)/ruff format --check cgnn_jax launch tests benchmarks configs

format: $(STAMP)
	$(BIN)/ruff format cgnn_jax launch tests benchmarks configs
	$(BIN)/ruff check --fix cgnn_jax launch tests benchmarks configs

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py --out=benchmarks/REPORT.md

train-stage1: $(STAMP)
	$(BIN)/python launch/train.py --config=configs/stage1.py --workdir=workdirs/stage1

# the pretrained default model: stages 1-3 + end to end, then copied into the package
train-default: $(STAMP)
	$(BIN)/python launch/train.py --config=configs/default.py --workdir=workdirs/default
	$(BIN)/python launch/export_model.py --workdir=workdirs/default

# the comparison table (thesis Table 3.2) and efficiency plots of the shipped model
evaluate: $(STAMP)
	$(BIN)/python launch/eval.py --events=2 --plots_dir=out/eval --json_out=out/eval/eval.json

graph-quality: $(STAMP)
	$(BIN)/python launch/graph_quality.py --checkpoint=workdirs/stage1 --events=2

fidelity: $(STAMP)
	$(BIN)/python benchmarks/sim_fidelity.py --events=5

clean:
	rm -rf $(VENV) out .pytest_cache
