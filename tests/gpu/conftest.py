"""GPU smoke tests: the gpu profile (vLLM + Chatterbox + faster-whisper on CUDA) for real.

They skip, with the reason, where no CUDA device is visible. Where one is, they need the
operator's weights at the paths of the config (TRUNKLINE_GPU_CONFIG, default
serving/config/gpu.yaml) and the engine envs built (`make engines` builds the CPU ones; the
GPU image builds the CUDA ones), and fail with the model store's message when they are missing.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest


def cuda_devices() -> list[str]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line for line in out.stdout.splitlines() if line.startswith("GPU ")]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if "tests/gpu/" in item.nodeid]
    if gpu_items and not cuda_devices():
        skip = pytest.mark.skip(
            reason="no CUDA device (nvidia-smi lists no GPU): gpu profile skipped"
        )
        for item in gpu_items:
            item.add_marker(skip)
