"""A whole agent call wired the way the server runs one (recording, live registry, store
sink), with the real CPU models over real SIP on loopback (ports 19012-19013, RTP
19180-19249), checked through the API: live while it runs, then its record and a
recording in which Whisper hears the greeting on the agent's channel and the
question on the caller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

import models
from agent.app.api import agent_app
from agent.app.live_registry import InProcessRegistry, LiveSink
from agent.app.record_sink import StoreSink, record_id
from agent.controlplane.db import ControlPlaneStore
from agent.metrics import CallMetrics
from agent.records import CallRecordStore
from agent.session import CallSession, Engines, SessionOptions, prepare_session
from agent.session.recording import RecordingCall, start_recording
from serving.llm.llama_cpp_engine import LlamaCppLLM
from serving.stt.faster_whisper_engine import FasterWhisperSTT
from serving.tts.piper_engine import PiperTTS
from telephony.interface import SAMPLE_RATE, IncomingCall
from telephony.sip_endpoint import SipConfig, SipEndpoint
from tests.controlplane.conftest import mint_key
from tests.speech import phone_roundtrip, speak

pytestmark = pytest.mark.timeout(300)

AGENT_SIP, CALLER_SIP = 19012, 19013
AGENT_RTP, CALLER_RTP = (19180, 19214), (19215, 19249)
OPTIONS = SessionOptions(
    max_tokens=40, holding_after_s=8.0, silence_prompt_s=60.0, silence_hangup_s=60.0
)
VOICED = 500


@pytest.fixture(scope="module")
def engines() -> Iterator[Engines]:
    llm = LlamaCppLLM(models.resolve("qwen2.5-coder-0.5b-instruct"), n_ctx=2048)
    yield Engines(
        FasterWhisperSTT(models.resolve("whisper-tiny.en")),
        llm,
        PiperTTS(models.resolve("piper-joe-medium")),
    )
    llm.close()


def _voiced(frame: bytes) -> bool:
    return int(np.abs(np.frombuffer(frame, "<i2")).max(initial=0)) > VOICED


async def _quiet_after_voice(heard: list[tuple[float, bool]], since: float, quiet_s: float,
                             timeout_s: float) -> None:  # fmt: skip
    """Wait until the agent spoke after `since` and has then been quiet for `quiet_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        voiced = [t for t, v in heard if v and t >= since]
        if voiced and time.monotonic() - voiced[-1] >= quiet_s:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the agent did not speak and finish within {timeout_s} s")


async def test_a_served_call_is_live_then_stored_with_its_recording(
    engines: Engines, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRUNKLINE_HOME", str(tmp_path))
    url = f"sqlite:///{tmp_path / 'trunkline.db'}"
    sessions: dict[str, CallSession] = {}
    runs: list[asyncio.Task[None]] = []
    async with (
        ControlPlaneStore(url) as control_plane,
        CallRecordStore(url, spool_dir=tmp_path / "spool", retry_interval_s=0) as store,
        InProcessRegistry(replica="test") as registry,
    ):
        sink = LiveSink(StoreSink(store, CallMetrics()), registry)

        async def run(session: CallSession) -> None:  # what AgentServer._run_call does
            call_id = session.call.info.call_id
            sessions[call_id] = session
            try:
                await sink.on_call_start(session.record)
                await session.run()
            finally:
                sessions.pop(call_id, None)
                if isinstance(session.call, RecordingCall):
                    await session.call.finish()

        async def on_incoming(incoming: IncomingCall) -> None:
            prepared = await prepare_session(engines, OPTIONS)
            call = await incoming.answer()
            call = start_recording(call, record_id(call.info.call_id))
            session = CallSession(call, engines, OPTIONS, prepared=prepared, record_sink=sink)
            runs.append(asyncio.create_task(run(session)))

        async def refuse(incoming: IncomingCall) -> None:
            await incoming.reject(486, "Busy Here")

        agent = SipEndpoint(SipConfig(("127.0.0.1", AGENT_SIP), AGENT_RTP, user="agent"))
        phone = SipEndpoint(SipConfig(("127.0.0.1", CALLER_SIP), CALLER_RTP))
        key = {"Authorization": f"Bearer {await mint_key(control_plane, 'read')}"}
        app = agent_app(
            store=store,
            live_sessions=lambda: sessions,
            health=lambda: (True, {}),
            control_plane=control_plane,
            live_registry=registry,
        )
        transport = httpx.ASGITransport(app=app)
        await agent.start(on_incoming)
        await phone.start(refuse)
        listener: asyncio.Task[None] | None = None
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://a.test") as api:
                call = await phone.place_call(f"sip:agent@127.0.0.1:{AGENT_SIP}")
                heard: list[tuple[float, bool]] = []

                async def listen() -> None:
                    async for frame in call.audio_in():
                        heard.append((time.monotonic(), _voiced(frame)))

                listener = asyncio.create_task(listen())
                await _quiet_after_voice(heard, 0.0, 1.0, 60)  # the greeting

                # While it runs, the API lists it as live.
                live = (await api.get("/api/calls", params={"live": "true"}, headers=key)).json()
                assert [c["call_id"] for c in live["calls"]] == [call.info.call_id]
                detail = (await api.get(f"/api/calls/{call.info.call_id}", headers=key)).json()
                assert detail["live"] is True and detail["recording_url"] is None

                question, rate = speak("My receipt printer is out of paper.", rate=SAMPLE_RATE)
                question, _ = phone_roundtrip(question, rate)
                asked = time.monotonic()
                await call.write(question.astype("<i2").tobytes())
                await asyncio.wait_for(call.drain(), 30)
                await _quiet_after_voice(heard, asked + question.size / SAMPLE_RATE, 1.5, 90)
                await call.hangup()
                await asyncio.wait_for(asyncio.gather(*runs), 60)

                detail = (await api.get(f"/api/calls/{call.info.call_id}", headers=key)).json()
                assert detail["live"] is False and detail["end_reason"] == "remote_hangup"
                assert detail["recording_url"], detail
                recording = await api.get(detail["recording_url"], headers=key)
                assert recording.status_code == 200
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
            await phone.stop()
            await agent.stop()

    with wave.open(io.BytesIO(recording.content)) as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (2, SAMPLE_RATE)
        frames = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, 2)
    caller, agent_side = frames[:, 0].copy(), frames[:, 1].copy()
    loud_agent = np.flatnonzero(np.abs(agent_side) > VOICED)
    loud_caller = np.flatnonzero(np.abs(caller) > VOICED)
    assert loud_agent.size and loud_caller.size
    # The greeting came first, then the caller's question, then the reply.
    assert loud_agent[0] < loud_caller[0] < loud_agent[-1]
    tail = np.zeros(4000, np.int16)
    greeting = agent_side[: loud_caller[0]]
    said = (await engines.stt.transcribe(np.concatenate([greeting, tail]), SAMPLE_RATE)).text
    assert {"store", "support"} <= set(said.lower().replace(".", " ").replace(",", " ").split())
    asked_pcm = caller[loud_caller[0] : loud_caller[0] + 4 * SAMPLE_RATE]
    asked = (await engines.stt.transcribe(np.concatenate([asked_pcm, tail]), SAMPLE_RATE)).text
    # Whisper tiny on this channel has heard "print" and "newspaper": parts of words count.
    assert any(word in asked.lower() for word in ("print", "paper")), asked
