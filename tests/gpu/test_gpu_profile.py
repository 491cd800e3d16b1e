"""Smoke test of the gpu profile: load, one transcription, one chat with a tool call, one
cloned-voice synthesis, with latencies printed (run with -s to see them)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.audio import decode_audio, encode_wav
from serving.factory import load_config, profile_path
from tests.speech import speak, words

pytestmark = pytest.mark.gpu

REPO = Path(__file__).resolve().parents[2]
LOAD_TIMEOUT_S = 900
QUESTION = "The coupon printer on lane four is out of paper."
REFERENCE = (
    "Hello, this is the reference recording for the smoke test voice. "
    "It is long enough for the clone: a little over five seconds of speech."
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config_path() -> Path:
    return Path(os.environ.get("TRUNKLINE_GPU_CONFIG") or profile_path("gpu"))


def _clone_voice(voices_dir: Path, tts_settings) -> None:
    """Clone the smoke voice with the Chatterbox engine in its own env (its torch pins)."""
    envs = Path(os.environ.get("TRUNKLINE_ENVS", Path.home() / ".cache/trunkline/envs"))
    python = envs / "chatterbox" / "bin" / "python"
    assert python.exists(), (
        f"Chatterbox env missing at {python}: bash serving/envs/chatterbox/build.sh"
    )
    pcm, rate = speak(REFERENCE, rate=24000)
    ref = voices_dir.parent / "smoke-reference.wav"
    ref.write_bytes(encode_wav(pcm, rate))
    script = (
        "import asyncio, sys\n"
        "from serving.tts.chatterbox_engine import ChatterboxTTS\n"
        "tts = ChatterboxTTS(sys.argv[1], device='cuda', voices_dir=sys.argv[2])\n"
        "asyncio.run(tts.add_voice('smoke', open(sys.argv[3], 'rb').read(), replace=True))\n"
    )
    subprocess.run(
        [str(python), "-c", script, str(tts_settings.model_path), str(voices_dir), str(ref)],
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=600,
    )


@pytest.fixture(scope="module")
def gpu_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = load_config(_config_path())
    voices_dir = Path(config.engines["tts"].options.get("voices_dir", "/srv/trunkline/voices"))
    _clone_voice(voices_dir, config.engines["tts"])
    port = _free_port()
    log = tmp_path_factory.mktemp("gpu") / "serve.log"
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent.cli",
                "serve",
                "--config",
                str(_config_path()),
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        while time.monotonic() - started < LOAD_TIMEOUT_S:
            assert proc.poll() is None, f"serve exited early:\n{log.read_text()[-4000:]}"
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(2)
        else:
            pytest.fail(
                f"gpu profile not ready after {LOAD_TIMEOUT_S} s:\n{log.read_text()[-4000:]}"
            )
        print(f"\n[gpu] load: {time.monotonic() - started:.1f} s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_transcription(gpu_server: str) -> None:
    pcm, rate = speak(QUESTION, rate=16000)
    t0 = time.monotonic()
    r = httpx.post(
        f"{gpu_server}/v1/audio/transcriptions",
        files={"file": ("q.wav", encode_wav(pcm, rate), "audio/wav")},
        timeout=60,
    )
    print(f"[gpu] stt: {1000 * (time.monotonic() - t0):.0f} ms")
    assert r.status_code == 200, r.text
    assert {"printer", "paper"} <= words(r.json()["text"])


def test_chat_tool_call(gpu_server: str) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "check_printer",
            "parameters": {
                "type": "object",
                "properties": {"lane": {"type": "integer"}},
                "required": ["lane"],
            },
        },
    }
    t0 = time.monotonic()
    r = httpx.post(
        f"{gpu_server}/v1/chat/completions",
        timeout=120,
        json={
            "messages": [{"role": "user", "content": QUESTION}],
            "tools": [tool],
            "tool_choice": {"type": "function", "function": {"name": "check_printer"}},
        },
    )
    print(f"[gpu] llm tool call: {1000 * (time.monotonic() - t0):.0f} ms")
    assert r.status_code == 200, r.text
    call = r.json()["choices"][0]["message"]["tool_calls"][0]["function"]
    assert call["name"] == "check_printer"
    assert json.loads(call["arguments"])["lane"] == 4


def test_cloned_voice_synthesis(gpu_server: str) -> None:
    t0 = time.monotonic()
    r = httpx.post(
        f"{gpu_server}/v1/audio/speech",
        timeout=120,
        json={"input": "Thanks for calling the help desk.", "voice": "smoke"},
    )
    print(f"[gpu] tts (cloned voice): {1000 * (time.monotonic() - t0):.0f} ms")
    assert r.status_code == 200, r.text
    pcm, rate = decode_audio(r.content)
    assert rate == 24000
    assert len(pcm) > rate // 2
