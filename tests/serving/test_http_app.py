"""The in-process serving stack (`trunkline serve --no-ray`) over real HTTP.

Real engines from the cpu profile (faster-whisper tiny.en, llama.cpp Qwen 0.5B,
Piper joe + espeak-ng), real espeak speech, uvicorn on a loopback port.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from agent.cli.serve_cmd import make_local_server
from serving.audio import encode_wav
from serving.client import http_client
from serving.factory import ConfigError, build_engines, load_config, parse_config, profile_path
from serving.http_app import Engines, ServingState, build_app
from tests.speech import phone_roundtrip, speak, wer, words

RESTART_PRINTER = {
    "type": "function",
    "function": {
        "name": "restart_printer",
        "description": "Restart the receipt printer of one checkout lane",
        "parameters": {
            "type": "object",
            "properties": {"store_id": {"type": "string"}, "lane": {"type": "integer"}},
            "required": ["store_id", "lane"],
        },
    },
}


def free_port() -> int:
    for port in range(18000, 19000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 18000-18999")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, ServingState]]:
    config = load_config(profile_path("cpu"))
    port = free_port()
    server, state = make_local_server(config, "127.0.0.1", port)
    state.engines = Engines(**build_engines(config))  # real models, via models.resolve
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", state
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def base_url(served: tuple[str, ServingState]) -> str:
    return served[0]


@pytest.fixture
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=120, trust_env=False) as client:
        yield client


def wav_of(text: str, rate: int = 16000, phone: bool = False) -> bytes:
    pcm, rate = speak(text, rate=rate)
    if phone:
        pcm, rate = phone_roundtrip(pcm, rate)
    return encode_wav(pcm, rate)


def transcribe(http: httpx.Client, wav: bytes, **form: str) -> httpx.Response:
    return http.post("/v1/audio/transcriptions", files={"file": ("a.wav", wav)}, data=form)


def assert_error(resp: httpx.Response, status: int, *fragments: str) -> None:
    assert resp.status_code == status, resp.text
    message = resp.json()["error"]["message"].lower()
    for fragment in fragments:
        assert fragment.lower() in message, message


# ---------------------------------------------------------------- health


def test_health_and_models(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    models = {m["kind"]: m["id"] for m in http.get("/v1/models").json()["data"]}
    assert models == {
        "stt": "whisper-tiny.en",
        "llm": "qwen2.5-coder-0.5b-instruct",
        "tts": "piper-joe-medium",
    }
    assert "joe" in http.get("/v1/audio/voices").json()["voices"]


async def test_healthz_is_503_until_engines_are_loaded() -> None:
    state = ServingState()
    transport = httpx.ASGITransport(app=build_app(state))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        resp = await client.get("/healthz")
        assert resp.status_code == 503 and resp.json()["status"] == "loading"
        chat = await client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
        )
        assert_error(chat, 503, "loading")
        state.load_error = "ModelMissing: whisper-tiny.en: /x/model.bin is missing"
        resp = await client.get("/healthz")
        assert resp.status_code == 503 and "model.bin" in resp.json()["error"]


# ---------------------------------------------------------------- STT


@pytest.mark.parametrize("phone", [False, True], ids=["16k", "phone-mulaw"])
def test_transcription_returns_the_spoken_words(http: httpx.Client, phone: bool) -> None:
    text = "The printer at the front register is showing a red light."
    resp = transcribe(http, wav_of(text, phone=phone))
    assert resp.status_code == 200, resp.text
    assert wer(text, resp.json()["text"]) <= (0.4 if phone else 0.2), resp.json()


def test_verbose_json_has_segments(http: httpx.Client) -> None:
    resp = transcribe(http, wav_of("Please check the paper roll."), response_format="verbose_json")
    body = resp.json()
    assert resp.status_code == 200 and body["duration"] > 0.5
    assert body["segments"] and body["segments"][-1]["end"] <= body["duration"] + 0.1
    assert "paper" in words(" ".join(s["text"] for s in body["segments"]))


# ---------------------------------------------------------------- TTS


@pytest.mark.parametrize("voice", ["joe", "en-us"], ids=["piper", "espeak-fallback"])
def test_speech_transcribes_back_to_its_input(http: httpx.Client, voice: str) -> None:
    text = "Your printer is working again."
    resp = http.post("/v1/audio/speech", json={"input": text, "voice": voice})
    assert resp.status_code == 200 and resp.headers["content-type"] == "audio/wav"
    pcm, rate = sf.read(io.BytesIO(resp.content), dtype="int16")
    assert len(pcm) / rate > 0.8 and np.abs(pcm).max() > 1000  # real audio, not silence
    heard = transcribe(http, resp.content).json()["text"]
    assert {"printer", "working", "again"} <= set(words(heard)), heard


# ---------------------------------------------------------------- LLM


def test_chat_answers(http: httpx.Client) -> None:
    resp = http.post(
        "/v1/chat/completions",
        json={
            "messages": [
                {"role": "system", "content": "You are Maya, a receipt-printer support agent."},
                {  # content as OpenAI text parts
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is your name? "},
                        {"type": "text", "text": "Answer in one short sentence."},
                    ],
                },
            ],
            "max_tokens": 40,
        },
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert (
        choice["message"]["role"] == "assistant" and "maya" in choice["message"]["content"].lower()
    )
    usage = body["usage"]
    assert usage["prompt_tokens"] > 10 and usage["completion_tokens"] > 0
    assert "cached_tokens" in usage["prompt_tokens_details"]


def test_chat_returns_the_named_tool_call(http: httpx.Client) -> None:
    resp = http.post(
        "/v1/chat/completions",
        json={
            "messages": [
                {"role": "user", "content": "Restart the printer on lane 3 in store S042."}
            ],
            "tools": [RESTART_PRINTER],
            "tool_choice": {"type": "function", "function": {"name": "restart_printer"}},
        },
    )
    assert resp.status_code == 200, resp.text
    choice = resp.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "restart_printer"
    args = json.loads(call["function"]["arguments"])
    assert args["lane"] == 3 and "42" in args["store_id"]


def test_chat_streams_sse_and_warm_prefix_is_cached(http: httpx.Client) -> None:
    system = "You are Maya, a support agent for store receipt printers. " * 4

    def stream(question: str) -> tuple[str, dict]:
        body = {
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": question},
            ],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": 24,
        }
        events = []
        with http.stream("POST", "/v1/chat/completions", json=body) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    events.append(line[6:])
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert all(c["object"] == "chat.completion.chunk" for c in chunks)
        text = "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        )
        assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")
        return text, chunks[-1]["usage"]

    text, cold = stream("Say hello.")
    assert text.strip()
    _, warm = stream("Say goodbye.")
    # The second turn shares the system prompt: it must come from the prefix cache.
    assert warm["prompt_tokens_details"]["cached_tokens"] >= 40, (cold, warm)


# ---------------------------------------------------------------- bad input


def test_bad_inputs_get_clear_4xx_and_the_server_keeps_serving(http: httpx.Client) -> None:
    good = wav_of("Testing one two three.")
    assert_error(transcribe(http, b"RIFF\x00\x01 definitely not audio"), 400, "decoded")
    assert_error(transcribe(http, good[: len(good) // 3]), 400, "truncated")
    assert_error(transcribe(http, b""), 400, "empty")
    assert_error(http.post("/v1/audio/transcriptions", data={"x": "1"}), 400, "file")
    assert_error(transcribe(http, good, response_format="srt"), 400, "response_format")
    assert_error(http.post("/v1/audio/speech", json={"input": "   "}), 400, "empty")
    assert_error(http.post("/v1/audio/speech", json={"input": "hi", "voice": "zz"}), 400, "voice")
    assert_error(
        http.post(
            "/v1/chat/completions",
            content=b'{"messages": [',
            headers={"content-type": "application/json"},
        ),
        400,
        "json",
    )
    assert_error(http.post("/v1/chat/completions", json={"messages": []}), 400, "messages")
    assert_error(
        http.post("/v1/chat/completions", json={"messages": [{"role": "robot", "content": "x"}]}),
        400,
        "role",
    )
    assert_error(
        http.post(
            "/v1/chat/completions",
            json={
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [RESTART_PRINTER],
                "tool_choice": {"type": "function", "function": {"name": "format_disk"}},
            },
        ),
        400,
        "format_disk",
    )
    image = {"type": "image_url", "image_url": {"url": "http://127.0.0.1/x.png"}}
    assert_error(
        http.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": [image]}]}
        ),
        400,
        "image_url",
    )
    # ...and it still serves.
    assert http.get("/healthz").status_code == 200
    assert "three" in words(transcribe(http, good).json()["text"])


def test_a_slow_engine_gets_503_not_a_hung_request(served: tuple[str, ServingState]) -> None:
    base, state = served
    old = state.first_output_timeout_s
    state.first_output_timeout_s = 0.001  # no model answers this fast
    try:
        with httpx.Client(base_url=base, timeout=60, trust_env=False) as http:
            t0 = time.monotonic()
            resp = http.post(
                "/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "Tell me a long story."}]},
            )
            assert time.monotonic() - t0 < 30
            assert_error(resp, 503, "no output within")
    finally:
        state.first_output_timeout_s = old
    with httpx.Client(base_url=base, timeout=120, trust_env=False) as http:  # still serving
        resp = http.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "Say OK."}], "max_tokens": 5},
        )
        assert resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"]


# ---------------------------------------------------------------- the agent's client


async def test_http_client_speaks_the_engine_protocols(base_url: str) -> None:
    client = await http_client(base_url)
    try:
        text = "The paper is stuck inside the printer again."
        pcm, rate = speak(text)
        transcript = await client.stt.transcribe(pcm, rate)
        assert wer(text, transcript.text) <= 0.2, transcript.text

        deltas = [
            d
            async for d in client.llm.chat(
                [{"role": "user", "content": "Restart lane 5 printer in store S7."}],
                tools=[RESTART_PRINTER],
                tool_choice={"type": "function", "function": {"name": "restart_printer"}},
            )
        ]
        calls = [d.tool_call for d in deltas if d.tool_call]
        assert len(calls) == 1 and json.loads(calls[0].arguments)["lane"] == 5
        assert deltas[-1].usage is not None and deltas[-1].usage.prompt_tokens > 0

        chunks = [c async for c in client.tts.synthesize("Hello. It works now.", "joe")]
        audio = np.concatenate([c.pcm for c in chunks])
        assert chunks[0].sample_rate == 22050 and len(audio) / 22050 > 0.8
    finally:
        await client.aclose()


# ---------------------------------------------------------------- config and CLI


def test_config_errors_name_the_key_and_the_problem() -> None:
    def error(raw: object) -> str:
        with pytest.raises(ConfigError) as info:
            parse_config(raw, source="t.yaml")
        return str(info.value)

    assert "engines: missing" in error({})
    assert "unknown engine 'whisperx'" in error({"engines": {"stt": {"engine": "whisperx"}}})
    assert "is a tts engine, not llm" in error({"engines": {"llm": {"engine": "piper"}}})
    assert "needs a model" in error({"engines": {"stt": {"engine": "faster-whisper"}}})
    assert "unknown key(s) ['modle']" in error(
        {"engines": {"stt": {"engine": "faster-whisper", "modle": "x"}}}
    )
    assert "engines.llm.deployment.num_cpus: must be a number" in error(
        {"engines": {"llm": {"engine": "llama-cpp", "model": "m", "deployment": {"num_cpus": "a"}}}}
    )
    assert "http.port: must be between" in error(
        {"http": {"port": 70000}, "engines": {"tts": {"engine": "espeak"}}}
    )
    gpu = load_config(profile_path("gpu"))
    assert gpu.engines["llm"].deployment.env == "vllm" and gpu.engines["tts"].fallback


def test_serve_cli_reports_a_missing_model_file(tmp_path: Path) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text(
        f"engines:\n  llm:\n    engine: llama-cpp\n    model_path: {tmp_path / 'nowhere.gguf'}\n"
    )
    trunkline = Path(sys.executable).parent / "trunkline"
    assert trunkline.exists(), f"{trunkline} missing: install the project (pip install -e .)"
    run = subprocess.run(
        [str(trunkline), "serve", "--no-ray", "--config", str(config), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert "nowhere.gguf" in run.stderr and "does not exist" in run.stderr
