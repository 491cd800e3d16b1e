"""The store phone on loopback ports from our range (18500-18999): a real simulator, the
phone with the real Whisper model, and a test-side SIP caller that talks like Maya."""

from __future__ import annotations

import random
import socket

import pytest

import models
from agent.storesim.runner import StoreSim
from serving.stt.faster_whisper_engine import FasterWhisperSTT
from serving.tts.piper_engine import PiperTTS

# 18500-18699 TCP/UDP listeners, 18700-18799 the phone's RTP, 18800-18899 the caller's RTP.
LISTEN_RANGE = (18500, 18699)
PHONE_RTP = (18700, 18799)
CALLER_RTP = (18800, 18899)
TOKEN = "test-token"
FAST_TIMING = {"ink_clean_s": 0.4, "reset_s": 1.5, "power_on_s": 0.3, "pc_restart_s": 1.0}

_handed_out: set[int] = set()


def free_port() -> int:
    """A port in our range free for both TCP and UDP now, never handed out twice."""
    for _ in range(500):
        port = random.randint(*LISTEN_RANGE)
        if port in _handed_out:
            continue
        try:
            with socket.socket() as tcp, socket.socket(type=socket.SOCK_DGRAM) as udp:
                tcp.bind(("127.0.0.1", port))
                udp.bind(("127.0.0.1", port))
        except OSError:
            continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {LISTEN_RANGE}")


def make_sim(state_dir, scenario: str) -> StoreSim:
    return StoreSim(
        scenario=scenario,
        state_dir=state_dir,
        ssh_port=free_port(),
        http_port=free_port(),
        token=TOKEN,
        timing=FAST_TIMING,
    )


@pytest.fixture(scope="session")
def stt() -> FasterWhisperSTT:
    return FasterWhisperSTT(models.resolve("whisper-tiny.en"), cpu_threads=2)


@pytest.fixture(scope="session")
def maya_voice() -> PiperTTS:
    """The test caller speaks like the agent does: Piper's embedded voice."""
    return PiperTTS(models.resolve("piper-joe-medium"))


@pytest.fixture
async def sim(request, tmp_path):
    """A running simulator; parametrize indirectly with a scenario name (default paper_out)."""
    async with make_sim(tmp_path / "storesim", getattr(request, "param", "paper_out")) as running:
        yield running
