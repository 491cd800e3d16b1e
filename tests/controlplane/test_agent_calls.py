"""A call to an agent made through the management API is answered by that agent: its
greeting, its persona and instructions, its voice; sip:agent@ still gets Maya.

Real everything: the control-plane API (API key, SQLite), the agent server on the
embedded CPU models, a caller over real SIP/RTP on loopback (ports 19560-19799) speaking
espeak-ng. The TTS is wrapped only to log which voice each line was asked for.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from agent.app.api import agent_app
from agent.app.dialer import DialOptions, talk
from agent.app.server import AgentServer
from agent.app.settings import AgentSettings, SipSettings
from agent.controlplane.db import ControlPlaneStore
from agent.controlplane.voice_admin import NoCloningVoiceAdmin
from agent.records import CallRecordStore
from agent.session import SessionOptions
from agent.session.fallback import synthesize_8k
from serving.factory import build_engines, parse_config
from tests.controlplane.conftest import mint_key
from tests.e2e.conftest import caller_speech
from tests.e2e.stack import CPU_ENGINES

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

AGENT_SIP = ("127.0.0.1", 19560)
AGENT_RTP = (19600, 19699)
CALLER_SIP = 19570
CALLER_RTP = (19700, 19799)
VOICE = "en-gb"  # an espeak-ng voice behind Piper: a voice this CPU stack really has
GREETING = "Good morning, Rosebud Bakery, Bella speaking."


class VoiceLog:
    """The real TTS, noting (text, voice) of every request."""

    def __init__(self, tts: Any) -> None:
        self.tts = tts
        self.name = tts.name
        self.requests: list[tuple[str, str | None]] = []

    def voices(self) -> list[str]:
        return self.tts.voices()

    def synthesize(self, text: str, voice: str | None = None) -> Any:
        self.requests.append((text, voice))
        return self.tts.synthesize(text, voice)


def similarity(received: np.ndarray, line: np.ndarray) -> float:
    """How well `line` matches the best-aligned stretch of `received` (Pearson r)."""
    r, x = received.astype(np.float64), line.astype(np.float64)
    if r.size < x.size:
        x = x[: r.size]
    size = r.size + x.size
    corr = np.fft.irfft(np.fft.rfft(r, size) * np.conj(np.fft.rfft(x, size)), size)
    lag = int(np.argmax(corr[: r.size - x.size + 1]))
    return float(np.corrcoef(r[lag : lag + x.size], x)[0, 1])


def words(text: str | None) -> set[str]:
    return set(re.findall(r"[a-z0-9']+", (text or "").lower()))


@pytest.fixture(scope="module")
def engines() -> Any:
    config = parse_config({"profile": "cpu", "engines": CPU_ENGINES})
    built = build_engines(config)
    yield built["stt"], built["llm"], VoiceLog(built["tts"])
    built["llm"].close()


@pytest.fixture
async def stack(engines: Any, tmp_path: Path) -> AsyncIterator[tuple[AgentServer, Any]]:
    control_plane = ControlPlaneStore(f"sqlite:///{tmp_path / 'controlplane.db'}")
    store = CallRecordStore(f"sqlite:///{tmp_path / 'records.db'}", spool_dir=tmp_path / "spool")
    options = SessionOptions(
        max_tokens=60, holding_after_s=8.0, silence_prompt_s=60.0, max_call_s=300.0
    )
    settings = AgentSettings(
        sip=SipSettings(bind=AGENT_SIP, rtp_ports=AGENT_RTP, media_timeout_s=10.0),
        session=options,
    )
    server = AgentServer(engines, settings, store=store, control_plane=control_plane)
    await server.start()
    app = agent_app(
        store=store,
        live_sessions=lambda: server.sessions,
        health=lambda: (True, {}),
        control_plane=control_plane,
        voice_admin=NoCloningVoiceAdmin(engines[2].name),
    )
    key = await mint_key(control_plane, "admin")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://agent.test",
        headers={"Authorization": f"Bearer {key}"},
    ) as client:
        try:
            yield server, client
        finally:
            await server.stop()
            await control_plane.close()


async def create_bella(api: httpx.AsyncClient) -> int:
    """The walkthrough's agent, made the way a newcomer makes it: through the API."""

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await api.post(path, json=body)
        assert response.status_code == 201, response.text
        return response.json()

    template = await post(
        "/api/templates",
        {"name": "Bakery", "base_prompt": "You answer the phone for Rosebud Bakery."},
    )
    agent = await post(
        "/api/agents",
        {
            "name": "Bella",
            "description": "The bakery's cheerful order assistant.",
            "template_id": template["id"],
            "voice_id": VOICE,
            "custom_settings": {"greeting": GREETING},
        },
    )
    await post(
        "/api/instructions",
        {
            "agent_id": agent["id"],
            "instruction_type": "do",
            "instruction": "Tell every caller that fresh bread is ready at seven in the morning.",
            "priority": 5,
        },
    )
    goal = await post(
        "/api/goals",
        {"name": "take_order", "description": "The caller's order with a pickup time."},
    )
    response = await api.put(f"/api/agents/{agent['id']}/goals/{goal['id']}", json={})
    assert response.status_code in (200, 201), response.text
    return agent["id"]


async def call(uri: str, utterance: np.ndarray, port_offset: int) -> Any:
    options = DialOptions(
        bind=("127.0.0.1", CALLER_SIP + port_offset),
        rtp_ports=CALLER_RTP,
        reply_timeout_s=90.0,
        quiet_s=1.5,
    )
    return await talk(uri, [utterance], options)


async def saved_record(api: httpx.AsyncClient, server: AgentServer, call_id: str) -> Any:
    import asyncio

    for _ in range(80):  # the session hands its record over just after the hang-up
        response = await api.get(f"/api/calls/{call_id}")
        if response.status_code == 200 and not response.json()["live"]:
            return response.json()
        await asyncio.sleep(0.25)
    raise AssertionError(f"no saved record of {call_id}")


def agent_lines(record: dict[str, Any], kind: str) -> list[str]:
    """What the agent said of one kind ("greeting", "speech": its replies)."""
    return [
        e["text"] for e in record["transcript"] if e["speaker"] == "agent" and e["kind"] == kind
    ]


async def test_a_call_to_an_agent_made_through_the_api_is_that_agent(
    stack: tuple[AgentServer, httpx.AsyncClient], engines: Any
) -> None:
    server, api = stack
    await create_bella(api)
    tts: VoiceLog = engines[2]
    tts.requests.clear()
    question = caller_speech("Hello. When is the fresh bread ready?")
    host, port = server.sip_address
    result = await call(f"sip:bella@{host}:{port}", question, 0)
    assert result.greeting_s and len(result.turns) == 1 and result.turns[0].reply_start

    record = await saved_record(api, server, result.call_id)
    assert record["agent_name"] == "Bella"
    (chosen,) = [e["detail"] for e in record["events"] if e["kind"] == "agent"]
    assert "'bella'" in chosen and f"voice {VOICE}" in chosen, chosen
    assert agent_lines(record, "greeting") == [GREETING], record["transcript"]
    # Its instruction is honoured: the reply is the bakery's opening time.
    reply = " ".join(agent_lines(record, "speech"))
    assert words(reply) & {"seven", "7", "7am"}, record["transcript"]
    # Every line of the call was asked for in the agent's voice, greeting included.
    spoken = [voice for text, voice in tts.requests]
    assert spoken and set(spoken) == {VOICE}, tts.requests

    # The caller heard Bella's greeting (STT on what came over RTP), in her voice: the
    # audio matches the greeting rendered in that voice, not in the default one.
    stt = engines[0]
    heard = (await stt.transcribe(result.received[: 8000 * 5], 8000)).text
    assert words(heard) & {"rosebud", "bakery", "bella"}, heard
    hers = await synthesize_8k(tts.tts, GREETING, VOICE, 60.0)
    default = await synthesize_8k(tts.tts, GREETING, None, 60.0)
    window = result.received[: 8000 * 8]
    match = (similarity(window, hers), similarity(window, default))
    print("greeting audio vs her voice, vs the default voice:", match)
    assert match[0] > 0.6 > match[1], match


async def test_the_default_number_and_unknown_names_get_maya_in_the_default_voice(
    stack: tuple[AgentServer, httpx.AsyncClient], engines: Any
) -> None:
    server, api = stack
    await create_bella(api)
    tts: VoiceLog = engines[2]
    host, port = server.sip_address
    for n, user in enumerate(("agent", "nobody-here")):
        tts.requests.clear()
        options = DialOptions(
            bind=("127.0.0.1", CALLER_SIP + 1 + n), rtp_ports=CALLER_RTP, reply_timeout_s=60.0
        )
        result = await talk(f"sip:{user}@{host}:{port}", [], options)
        assert result.greeting_s, user
        record = await saved_record(api, server, result.call_id)
        assert record["agent_name"] == "Maya", record
        (greeting,) = agent_lines(record, "greeting")
        assert "store support" in greeting.lower(), record["transcript"]
        assert {voice for _, voice in tts.requests} <= {None}, tts.requests
