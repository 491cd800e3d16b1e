"""Voice-admin tests on the real Chatterbox engine: they run on the Chatterbox env's
Python, started by tests/voices/test_voice_admin_chatterbox.py (or by hand:
PYTHONPATH=. ~/.cache/trunkline/envs/chatterbox/bin/python -m pytest tests/voices/in_env).

They use the random-weight checkpoint of tests/engines/chatterbox (real shapes, CPU).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

HAS_CHATTERBOX = importlib.util.find_spec("chatterbox") is not None
if not HAS_CHATTERBOX:
    collect_ignore = ["test_engine_voice_admin.py"]
else:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "engines" / "chatterbox"))

    @pytest.fixture(scope="session")
    def make_engine():
        from build_random_checkpoint import cached_checkpoint, t3_layers
        from chatterbox_samples import CFM_STEPS, SEED, TEST_THREADS

        from serving.tts.chatterbox_engine import ChatterboxTTS

        checkpoint = cached_checkpoint()

        def make(voices_dir: Path):
            with t3_layers():
                return ChatterboxTTS(
                    checkpoint,
                    "cpu",
                    voices_dir,
                    seed=SEED,
                    cfm_steps=CFM_STEPS,
                    threads=TEST_THREADS,
                )

        return make
