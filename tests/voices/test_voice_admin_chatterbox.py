"""Cloning through EngineVoiceAdmin with the real Chatterbox engine: runs tests/voices/in_env
on the Python of the Chatterbox env (it pins its own torch). The env is built by
`bash serving/envs/chatterbox/build.sh`; without it this test fails and says so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENVS = Path(os.environ.get("TRUNKLINE_ENVS") or Path.home() / ".cache" / "trunkline" / "envs")
ENV_DIR = ENVS / "chatterbox"


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_engine_voice_admin_in_the_chatterbox_env():
    python = ENV_DIR / "bin" / "python"
    if not (ENV_DIR / ".trunkline-stamp").is_file() or not python.is_file():
        pytest.fail(
            f"the Chatterbox env is not built at {ENV_DIR}; "
            "run: bash serving/envs/chatterbox/build.sh",
            pytrace=False,
        )
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.run(
        [str(python), "-m", "pytest", "tests/voices/in_env", "-q", "-x", "-p", "no:cacheprovider"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1100,
    )
    sys.stdout.write(proc.stdout[-20000:] + proc.stderr[-5000:])
    assert proc.returncode == 0, f"in-env voice-admin tests failed:\n{proc.stdout[-8000:]}"
