"""The Ray Serve cpu app, started for real (one replica per engine, fractions of a
core) and used over HTTP through Serve's proxy and through deployment handles."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import soundfile as sf

from serving import ray_app
from serving.audio import encode_wav
from serving.base import BadInput
from serving.client import ray_client
from serving.factory import load_config, profile_path
from tests.serving.test_http_app import RESTART_PRINTER, free_port
from tests.speech import speak, wer, words

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    config = load_config(profile_path("cpu"))
    port = free_port()
    ray_app.run(config, port=port)  # returns once every deployment is up
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        ray_app.shutdown()


@pytest.fixture
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=120, trust_env=False) as client:
        yield client


def test_ray_app_serves_every_route(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    kinds = {m["kind"] for m in http.get("/v1/models").json()["data"]}
    assert kinds == {"stt", "llm", "tts"}

    text = "Please unplug the receipt printer and wait a moment."
    pcm, rate = speak(text)
    resp = http.post("/v1/audio/transcriptions", files={"file": ("a.wav", encode_wav(pcm, rate))})
    assert resp.status_code == 200 and wer(text, resp.json()["text"]) <= 0.2, resp.text

    speech = http.post("/v1/audio/speech", json={"input": "The printer is ready.", "voice": "joe"})
    assert speech.status_code == 200
    audio, rate = sf.read(io.BytesIO(speech.content), dtype="int16")
    assert len(audio) / rate > 0.6
    heard = http.post("/v1/audio/transcriptions", files={"file": ("s.wav", speech.content)})
    assert {"printer", "ready"} <= set(words(heard.json()["text"])), heard.text

    chat = http.post(
        "/v1/chat/completions",
        json={
            "messages": [{"role": "user", "content": "Restart the printer on lane 2 in store S9."}],
            "tools": [RESTART_PRINTER],
            "tool_choice": {"type": "function", "function": {"name": "restart_printer"}},
        },
    )
    assert chat.status_code == 200, chat.text
    (call,) = chat.json()["choices"][0]["message"]["tool_calls"]
    assert json.loads(call["function"]["arguments"])["lane"] == 2


def test_ray_app_streams_tokens_through_the_handles(http: httpx.Client) -> None:
    body = {
        "messages": [{"role": "user", "content": "Count from one to ten in words."}],
        "stream": True,
        "max_tokens": 40,
    }
    arrivals: list[float] = []
    with http.stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line.startswith("data: {") and '"content"' in line:
                arrivals.append(time.monotonic())
    # Tokens arrive one by one as they are generated, not as one block at the end.
    assert len(arrivals) > 5
    assert arrivals[-1] - arrivals[1] > 0.05, arrivals


def test_ray_app_bad_input_is_4xx_and_it_keeps_serving(http: httpx.Client) -> None:
    pcm, rate = speak("I already restarted the computer but nothing changed.")
    wav = encode_wav(pcm, rate)
    resp = http.post("/v1/audio/transcriptions", files={"file": ("a.wav", wav[:200])})
    assert resp.status_code == 400 and "truncated" in resp.json()["error"]["message"]
    resp = http.post("/v1/audio/speech", json={"input": "hi", "voice": "nobody"})
    assert resp.status_code == 400 and "nobody" in resp.json()["error"]["message"]
    resp = http.post("/v1/audio/speech", json={"input": ""})
    assert resp.status_code == 400
    resp = http.post(
        "/v1/chat/completions", content=b"{", headers={"content-type": "application/json"}
    )
    assert resp.status_code == 400
    resp = http.post("/v1/audio/transcriptions", files={"file": ("a.wav", wav)})
    assert resp.status_code == 200 and "restarted" in words(resp.json()["text"])


async def test_ray_client_uses_the_deployments_directly(base_url: str) -> None:
    client = await ray_client()
    deltas = [
        d async for d in client.llm.chat([{"role": "user", "content": "Say OK."}], max_tokens=8)
    ]
    assert "".join(d.text for d in deltas).strip() and deltas[-1].usage is not None
    chunks = [c async for c in client.tts.synthesize("One. Two.", "joe")]
    assert chunks and all(c.pcm.dtype == np.int16 and c.sample_rate == 22050 for c in chunks)
    with pytest.raises(BadInput, match="nobody"):
        [c async for c in client.tts.synthesize("hi", "nobody")]
    transcript = await client.stt.transcribe(*speak("Good morning."))
    assert "morning" in words(transcript.text)


def test_gpu_profile_gives_each_heavy_engine_its_own_env() -> None:
    config = load_config(profile_path("gpu"))
    llm = ray_app.deployment_options(config.engines["llm"].deployment)
    tts = ray_app.deployment_options(config.engines["tts"].deployment)
    stt = ray_app.deployment_options(config.engines["stt"].deployment)
    assert llm["ray_actor_options"]["runtime_env"]["py_executable"].endswith("envs/vllm/bin/python")
    assert tts["ray_actor_options"]["runtime_env"]["py_executable"].endswith(
        "envs/chatterbox/bin/python"
    )
    env_vars = llm["ray_actor_options"]["runtime_env"]["env_vars"]
    assert env_vars["PYTHONPATH"] == str(ray_app.REPO_ROOT) and env_vars["HF_HUB_OFFLINE"] == "1"
    assert "runtime_env" not in stt["ray_actor_options"]  # faster-whisper is in the main env
    assert llm["ray_actor_options"]["num_gpus"] > 0 and llm["autoscaling_config"]["max_replicas"]
    assert "num_replicas" not in llm  # autoscaling decides
