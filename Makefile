# Two entry points for a fresh machine (see README):
#   make serve   set everything up, then run `trunkline serve` on the embedded default models
#   make test    set everything up (incl. the vLLM / Chatterbox engine environments), then run all tests
# Slow builds (llama.cpp wheel, engine environments, assembled model files) are cached under
# ~/.cache/trunkline and reused by later clones.

VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup engines serve test lint

setup:
	bash .ci/setup

engines: setup
	bash serving/envs/vllm/build.sh
	bash serving/envs/chatterbox/build.sh

serve: setup
	$(VENV)/bin/trunkline serve

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint engines
	$(VENV)/bin/pytest -ra
