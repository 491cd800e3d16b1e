#!/usr/bin/env bash
# Builds the Chatterbox TTS engine env at ~/.cache/trunkline/envs/chatterbox (idempotent:
# a stamp with the hash of requirements.txt and of the post-install step below skips the
# install when nothing changed; an unfinished build has no stamp and is redone).
# Usage: bash serving/envs/chatterbox/build.sh   (FORCE_REBUILD=1 to rebuild anyway)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../common.sh
source "$here/../common.sh"

# Packages whose metadata pins another torch (chatterbox-tts: torch==2.6.0, gradio, ...;
# torchaudio 2.11: torch==2.11) go in without their dependencies: requirements.txt already
# holds everything they need, pinned. The pins live here so the stamp covers them.
chatterbox_post_install() {
    local py=$1
    "$py" -m pip install --progress-bar off --no-deps \
        chatterbox-tts==0.1.7 \
        torchaudio==2.11.0 \
        s3tokenizer==0.3.0 \
        resemble-perth==1.0.1 \
        conformer==0.3.2
    # PyPI's torchaudio is a CUDA build: its compiled extension fails to load against the
    # CPU torch and takes `import torchaudio` down with it. Chatterbox and the watermarker
    # only use the pure-PyTorch parts (kaldi fbank, spectrogram transforms), which work
    # without the extension.
    local ta_lib
    ta_lib=$("$py" -c 'import importlib.util, pathlib; s = importlib.util.find_spec("torchaudio"); print(pathlib.Path(s.origin).parent / "lib")')
    rm -f "$ta_lib"/*.so
    # Smoke check: what the engine imports, and the watermarker chatterbox needs (it is
    # silently None when pkg_resources is missing, and the model then crashes).
    "$py" - <<'PY'
import perth
import torch
import torchaudio.compliance.kaldi  # noqa: F401
from chatterbox.tts import ChatterboxTTS  # noqa: F401

if perth.PerthImplicitWatermarker is None:
    raise SystemExit("resemble-perth's watermarker failed to import (needs setuptools<81)")
print("torch", torch.__version__, "chatterbox ok")
PY
}

build_env chatterbox "$here/requirements.txt" chatterbox_post_install
