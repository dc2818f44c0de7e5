# Stable Qwerty. `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= data/demo
DEMO_MODEL ?= $(DEMO_DIR)/tiny-model
PYTEST_ARGS ?=

.PHONY: help environment tiny-model demo test faults inference model export bench clean deploy secrets wandb-sync bot shell sync

help: ## list every target
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-14s %s\n", $$1, $$2}'

environment: $(STAMP) ## make the virtualenv at .venv/ with everything installed (torch pinned, CPU build)

# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build on machines whose disk carries
# only the 2.13.0 CPU build.
$(STAMP): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet torch==2.13.0
	$(PYTHON) -m pip install --quiet -e '.[gpu,dev]'
	touch $(STAMP)

tiny-model: $(STAMP) ## write a tiny random-weight SD pipeline to $(DEMO_MODEL) (no network)
	test -f $(DEMO_MODEL)/model_index.json || $(PYTHON) -m gpu_service tiny-model $(DEMO_MODEL)

DEMO_IMAGES ?= $(DEMO_DIR)/images
DEMO_PROMPT := /qwerty prompt_prefix:"a gorgeous painting of a" prompt_postfix:"in a psychedelic 1970s style" count:2

DEMO_QUALITY ?= $(DEMO_DIR)/quality-models

demo: tiny-model ## the product offline on the tiny model, through the shell: train the demo subject (with its quality report), then /qwerty
	test -d $(DEMO_IMAGES) || $(PYTHON) -m gpu_service demo-images $(DEMO_IMAGES)
	test -d $(DEMO_QUALITY)/dino || $(PYTHON) -m gpu_service tiny-quality-models $(DEMO_QUALITY) > /dev/null
	printf '%s\n' '/train urls:$(DEMO_IMAGES) steps:30' '$(DEMO_PROMPT)' | \
	  BASE_MODEL=$(DEMO_MODEL) DATA_DIR=$(DEMO_DIR) GPU_BACKEND=local TRAIN_CLASS_IMAGES=8 WANDB_SILENT=true \
	  QUALITY_CLIP_MODEL=$(DEMO_QUALITY)/clip QUALITY_DINO_MODEL=$(DEMO_QUALITY)/dino QUALITY_SAMPLES=1 \
	  $(PYTHON) -m bot shell

bot: $(STAMP) ## run the Discord bot (needs DISCORD_TOKEN; syncs commands only to DISCORD_GUILD_ID, if set)
	$(PYTHON) -m bot

shell: $(STAMP) ## the slash commands in a terminal, as in Discord (type help; reads scripts from stdin)
	$(PYTHON) -m bot shell

sync: $(STAMP) ## register the slash commands with Discord: globally, or to DISCORD_GUILD_ID when set
	$(PYTHON) -m bot sync

test: $(STAMP) ## run the test suite (offline, CPU)
	$(PYTHON) -m pytest $(PYTEST_ARGS)

# The figures print only when every fault test passed: a lost job or an unanswered member fails the test that injects it.
faults: $(STAMP) ## the fault suite (tests/faults) and the figures docs/RELIABILITY.md quotes
	$(PYTHON) -m pytest tests/faults -q $(PYTEST_ARGS)
	@injected=$$($(PYTHON) -m pytest tests/faults -q --collect-only $(PYTEST_ARGS) 2>/dev/null | grep -c '::'); \
	  echo "faults injected: $$injected (tests in tests/faults, all passed); jobs lost: 0; interactions left unanswered: 0"

# PROMPT_PREFIX=... on make's command line reaches the program through the environment (over .env).
inference: $(STAMP) ## generate with PROMPT_PREFIX / PROMPT_POSTFIX; writes PNGs + JSON under outputs/
	WANDB_SILENT=true $(PYTHON) -m bot inference

# IMAGES="a.png b.png" (links, files or folders) instead of IMAGES_FILE_URL; GPU_BACKEND=modal trains on Modal.
model: $(STAMP) ## train the subject from IMAGES_FILE_URL (or IMAGES=...), with a progress bar; prints the version
	WANDB_SILENT=true $(PYTHON) -m bot model $(IMAGES)

# SUBJECT and VERSION as /models lists them; FORMAT=kohya for AUTOMATIC1111 and ComfyUI.
FORMAT ?= diffusers
export: $(STAMP) ## write a version's LoRA under outputs/: make export SUBJECT=qwerty VERSION=1 [FORMAT=kohya]
	$(PYTHON) -m bot export $(SUBJECT) $(VERSION) --format $(FORMAT)

bench: $(STAMP) ## run every benchmark in bench/ and print its figures
	@for script in bench/*.py; do echo "== $$script"; $(PYTHON) $$script || exit 1; done

MODAL ?= $(VENV)/bin/modal
# The names on Modal derive from PROJECT_NAME, read here exactly as modal_app.py reads it (.env, environment).
PROJECT_NAME = $(shell $(PYTHON) -c 'from gpu_service.settings import Settings; print(Settings().PROJECT_NAME)')

deploy: $(STAMP) ## deploy the GPU service to Modal, then download its models into the cache Volume (once)
	$(MODAL) deploy modal_app.py
	$(MODAL) run modal_app.py::download_models

# Runs logged offline on Modal (no W&B key) are on the W&B Volume: copy them here, then upload with `wandb sync`.
WANDB_MODAL_DIR = $(shell $(PYTHON) -c 'from gpu_service.settings import Settings; print(Settings().DATA_DIR / "wandb-modal")')

wandb-sync: $(STAMP) ## copy the W&B runs logged offline on Modal into DATA_DIR/wandb-modal; prints the `wandb sync` command
	mkdir -p $(WANDB_MODAL_DIR)
	$(MODAL) volume get --force $(PROJECT_NAME)-wandb / $(WANDB_MODAL_DIR)
	@echo "Upload them to W&B (with WANDB_API_KEY set, or after \`wandb login\`):"
	@echo "  $(VENV)/bin/wandb sync $(WANDB_MODAL_DIR)/wandb/offline-run-*"

# Values go from .env.secrets to Modal without being echoed; empty values are fine (public base model,
# W&B offline). Each Secret holds only its own key, so inference containers never see the W&B key.
secrets: $(STAMP) ## create or update the Modal Secrets from .env.secrets (HUGGINGFACE_TOKEN, WANDB_API_KEY)
	@test -f .env.secrets || { echo "copy .env.secrets.example to .env.secrets and fill it in"; exit 1; }
	@set -a && . ./.env.secrets && set +a && \
	  $(MODAL) secret create --force $(PROJECT_NAME)-huggingface \
	    HUGGINGFACE_TOKEN="$${HUGGINGFACE_TOKEN:-$${HF_TOKEN:-}}" && \
	  $(MODAL) secret create --force $(PROJECT_NAME)-wandb WANDB_API_KEY="$${WANDB_API_KEY:-}"

clean: ## remove outputs/, data/demo and caches (keeps .venv/)
	rm -rf outputs $(DEMO_DIR) .pytest_cache
