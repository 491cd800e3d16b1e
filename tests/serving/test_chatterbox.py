"""Chatterbox TTS: runs tests/engines/chatterbox on the Python of the Chatterbox env.

Chatterbox pins another torch than the main venv, so its engine can only be imported
there. The env is built by `bash serving/envs/chatterbox/build.sh` (a few minutes, once);
without it this test fails and says so.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENVS = Path(os.environ.get("TRUNKLINE_ENVS") or Path.home() / ".cache" / "trunkline" / "envs")
ENV_DIR = ENVS / "chatterbox"
IN_ENV_TESTS = "tests/engines/chatterbox"


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_chatterbox_engine_in_its_env():
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
        [str(python), "-m", "pytest", IN_ENV_TESTS, "-q", "-x", "-p", "no:cacheprovider"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1700,
    )
    # Show the in-env pytest report as this test's output, pass or fail.
    sys.stdout.write(proc.stdout[-20000:] + proc.stderr[-5000:])
    assert proc.returncode == 0, f"in-env Chatterbox tests failed:\n{proc.stdout[-8000:]}"
