# catdog: `make train` and `make test` work on a fresh clone; they create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SHARED_ZIP := ../shared/data/PetImages-180.zip

# Data for `make train`: DATA=..., else $$CATDOG_DATA, else data/ when it holds photos or archives, else the shared
# zip on these machines, linked into data/ so that a plain `python train.py` afterwards trains on it too; with none
# of them the config's default applies (data/, filled by the official download).
HAS_LOCAL_DATA := $(shell find -L data -path data/cache -prune -o -type f \( -iname '*.jp*g' -o -iname '*.png' \
	-o -iname '*.bmp' -o -iname '*.webp' -o -iname '*.zip' -o -iname '*.tar*' \) -print -quit 2>/dev/null)
# DATA="/path/my photos (2024).zip" is quoted twice: for Hydra ('...', a ' in it as \') inside the shell's "..."
# (\ " ` in it escaped), so spaces, parentheses, commas and quotes in a path reach data.source as they are.
hydra_quoted = '$(subst ',\',$(1))'
shell_quoted = "$(subst `,\`,$(subst ",\",$(subst \,\\,$(1))))"
# $(call shell_word,TEXT): TEXT as one shell word for printf, whatever quotes it holds
shell_word = '$(subst ','\'',$(1))'
LINK_SHARED := $(if $(DATA)$(CATDOG_DATA)$(HAS_LOCAL_DATA),,$(wildcard $(SHARED_ZIP)))
LINK_DATA := $(if $(LINK_SHARED),mkdir -p data && ln -sfn $(abspath $(LINK_SHARED)) data/ && echo "Linked $(LINK_SHARED) into data/")
DATA_ARG := $(if $(DATA),$(call shell_quoted,data.source=$(call hydra_quoted,$(DATA))))
ARGS ?= experiment=tutorial trainer.max_epochs=1

.PHONY: install train sweep test test-cluster tensorboard lint typecheck docs wheel-check bench results clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements/constraints.txt --config-settings editable_mode=compat \
		-e ".[dev,sweeps,export,serve,audit]"
	touch $@

# after training, the command line that trains on the same photos again (README: What next)
train: $(STAMP)
	$(LINK_DATA)
	$(BIN)/python train.py $(DATA_ARG) $(ARGS)
	@printf 'Trained with: %s\n' $(call shell_word,$(BIN)/python train.py $(DATA_ARG) $(ARGS))
	@printf 'Next, on the same photos: %s [overrides]\n' $(call shell_word,$(BIN)/python train.py $(DATA_ARG))

# the design card's kernel sweep, `python train.py -m model.kernel=3,5` (the default net, 3 epochs a job), on the
# photos `make train` finds; ARGS adds overrides here (make sweep ARGS=trainer.max_epochs=1), none by default
sweep: ARGS =
sweep: $(STAMP)
	$(LINK_DATA)
	$(BIN)/python train.py -m model.kernel=3,5 $(DATA_ARG) $(ARGS)

# each file on one worker (its module fixtures are built once), the costliest files first (tests/conftest.py)
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# A real single-node SLURM (Debian's slurm-wlm and munge, installed as root when missing): a sweep through
# hydra/launcher=slurm with one job pre-empted by `scontrol requeue`, and an Optuna sweep with a pruner on it; the
# test starts and stops the daemons.
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
	$(BIN)/python -m benchmarks.results --check
	$(BIN)/lint-imports --no-cache  # the package's layers: [tool.importlinter] in pyproject.toml

# the docs/ pages as a site in site/ (mkdocs-material); strict: a broken link, anchor or page left out fails
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# the wheel installed into a fresh venv outside the clone: `catdog train` and `catdog predict` run there
wheel-check: $(STAMP)
	bash .ci/wheel-check

# mypy at its default level on the package ([tool.mypy] in pyproject.toml)
typecheck: $(STAMP)
	$(BIN)/mypy

# appends rows to results/<benchmark>.csv; `make results` then regenerates RESULTS.md and README.md's presets table
bench: $(STAMP)
	$(BIN)/python -m benchmarks $(ARGS)

results: $(STAMP)
	$(BIN)/python -m benchmarks.results

clean:
	rm -rf outputs .pytest_cache
