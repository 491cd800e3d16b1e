"""Chatterbox engine tests: they run on the Python of the Chatterbox env, started by
tests/serving/test_chatterbox.py (or by hand:
~/.cache/trunkline/envs/chatterbox/bin/python -m pytest tests/engines/chatterbox).

The main venv has no torch/chatterbox: there the engine tests are left to that runner
and only the torch-free voice store tests are collected here.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

HAS_CHATTERBOX = importlib.util.find_spec("chatterbox") is not None
if not HAS_CHATTERBOX:
    collect_ignore = ["test_chatterbox_engine.py"]

# An on-prem product phones nowhere, and progress bars would flood the test log.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

if HAS_CHATTERBOX:
    sys.path.insert(0, str(Path(__file__).parent))

    @pytest.fixture(scope="session")
    def checkpoint() -> Path:
        from build_random_checkpoint import cached_checkpoint

        return cached_checkpoint()

    @pytest.fixture(scope="session")
    def make_engine(checkpoint):
        """Builds engines on the random checkpoint (2-layer T3, seeded, few flow steps)."""
        from build_random_checkpoint import t3_layers
        from chatterbox_samples import CFM_STEPS, SEED, TEST_THREADS

        from serving.tts.chatterbox_engine import ChatterboxTTS

        def make(voices_dir: Path, **options):
            options = {"seed": SEED, "cfm_steps": CFM_STEPS, "threads": TEST_THREADS, **options}
            with t3_layers():
                return ChatterboxTTS(checkpoint, "cpu", voices_dir, **options)

        return make
