# catdog: `make train` and `make test` work on a fresh clone; they create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SHARED_ZIP := ../shared/data/PetImages-180.zip

# Data for `make train`: DATA=..., else $$CATDOG_DATA, else data/ when it holds photos or archives, else the shared
# zip on these machines; with none of them the config's default applies (data/, filled by the official download).
HAS_LOCAL_DATA := $(shell find data -path data/cache -prune -o -type f \( -iname '*.jp*g' -o -iname '*.png' \
	-o -iname '*.bmp' -o -iname '*.webp' -o -iname '*.zip' -o -iname '*.tar*' \) -print -quit 2>/dev/null)
DATA_ARG := $(if $(DATA),data.source=$(DATA),$(if $(CATDOG_DATA)$(HAS_LOCAL_DATA),,$(if $(wildcard $(SHARED_ZIP)),data.source=$(SHARED_ZIP))))
ARGS ?= experiment=tutorial trainer.max_epochs=1

.PHONY: install train sweep test test-cluster tensorboard lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements/constraints.txt -e ".[dev,sweeps,export,serve]"
	touch $@

# after training, the command line that trains on the same photos again (README: What next)
train: $(STAMP)
	$(BIN)/python train.py $(DATA_ARG) $(ARGS)
	@echo "Trained with: $(BIN)/python train.py $(DATA_ARG) $(ARGS)"
	@echo "Next, on the same photos: $(BIN)/python train.py $(DATA_ARG) [overrides]"

sweep: $(STAMP)
	$(BIN)/python train.py -m $(DATA_ARG) experiment=tutorial trainer.max_epochs=1 model.net.kernel=3,5

test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadfile $(PYTEST_ARGS)

# A real single-node SLURM (Debian's slurm-wlm and munge, installed as root when missing): a sweep through
# hydra/launcher=slurm with one job pre-empted by `scontrol requeue`; the test starts and stops the daemons.
test-cluster: $(STAMP)
	command -v slurmctld >/dev/null && command -v munged >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge; } || \
		echo "could not install slurm-wlm and munge (apt-get as root): the cluster test skips"
	$(BIN)/python -m pytest -q -rP -m cluster tests/cluster

tensorboard: $(STAMP)
	$(BIN)/tensorboard --logdir outputs

lint: $(STAMP)
	$(BIN)/ruff check catdog hydra_plugins tests benchmarks train.py
	$(BIN)/ruff format --check catdog hydra_plugins tests benchmarks train.py

bench: $(STAMP)
	$(BIN)/python -m benchmarks $(ARGS)

clean:
	rm -rf outputs .pytest_cache
