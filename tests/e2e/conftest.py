"""End-to-end fixtures: a real `trunkline serve --no-ray` subprocess per test module,
real SIP on loopback (ports 16000-16999), real models, espeak-ng callers.

Ports: serve SIP 16060 (conversation) / 16061 (interruptions), serve RTP 16100-16199 /
16500-16599; our callers 16070-16079 with RTP 16200-16299; baresip 16080, RTP 16300-16319.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import models
from serving.stt.faster_whisper_engine import FasterWhisperSTT
from telephony.interface import SAMPLE_RATE
from tests.e2e.stack import Stack, start_stack, stop_stack
from tests.speech import phone_roundtrip, speak

CALLER_SIP = 16070
CALLER_RTP = (16200, 16299)
# Short, deterministic replies; no holding line racing the reply on a slow CPU; no
# silence prompts inside a test's pauses.
CONVERSATION = {
    "max_tokens": 60,
    "holding_after_s": 8.0,
    "silence_prompt_s": 60.0,
    "silence_hangup_s": 30.0,
    "max_call_s": 300.0,
}


def caller_speech(text: str) -> np.ndarray:
    """`text` as a phone caller says it: espeak-ng, 8 kHz mu-law and back (int16)."""
    pcm, rate = speak(text, rate=SAMPLE_RATE)
    pcm, _ = phone_roundtrip(pcm, rate)
    return pcm.astype(np.int16)


def write_wav(path: Path, *parts: np.ndarray | float) -> Path:
    """A caller recording: speech arrays and seconds of silence, in order."""
    chunks = [
        np.zeros(round(p * SAMPLE_RATE), np.int16) if isinstance(p, int | float) else p
        for p in parts
    ]
    sf.write(path, np.concatenate(chunks), SAMPLE_RATE, subtype="PCM_16")
    return path


def words(text: str | None) -> set[str]:
    return set(re.findall(r"[a-z']+", (text or "").lower()))


@pytest.fixture(scope="session")
def stt() -> FasterWhisperSTT:
    return FasterWhisperSTT(models.resolve("whisper-tiny.en"))


def _run_stack(tmp_path_factory, name: str, sip_port: int, rtp: tuple[int, int], agent: dict):
    home = tmp_path_factory.mktemp(name)
    stack: Stack = asyncio.run(start_stack(home, sip_port=sip_port, rtp=rtp, agent=agent))
    yield stack
    code = asyncio.run(stop_stack(stack))  # None: a test already stopped it
    assert code in (0, None), f"trunkline serve exited {code} on SIGTERM:\n{stack.log()[-3000:]}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from _run_stack(tmp_path_factory, "serve", 16060, (16100, 16199), CONVERSATION)
