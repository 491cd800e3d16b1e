"""Call recordings from a real SIP call on loopback (ports 19010-19011, RTP 19100-19179):
both sides on one clock in a stereo WAV, what barge-in cut is cut from the recording
too, Whisper hears each side on its own channel, and the API serves the file.
"""

from __future__ import annotations

import asyncio
import io
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest

import models
from agent.app.api import agent_app
from agent.app.record_sink import record_id
from agent.controlplane.db import ControlPlaneStore
from agent.records import CallRecord, CallRecordStore
from agent.session.recording import RecordingCall, recording_file, start_recording
from serving.stt.faster_whisper_engine import FasterWhisperSTT
from telephony.interface import SAMPLE_RATE, Call, IncomingCall
from telephony.sip_endpoint import SipConfig, SipEndpoint
from tests.controlplane.conftest import mint_key
from tests.speech import phone_roundtrip, speak

pytestmark = pytest.mark.timeout(180)

AGENT_SIP, CALLER_SIP = 19010, 19011
AGENT_RTP, CALLER_RTP = (19100, 19139), (19140, 19179)
CALLER_SAYS = "my receipt printer is out of paper"
AGENT_SAYS = "please load a new roll of paper and close the printer lid"
AGENT_IS_CUT_OFF = (
    "let me read you the whole manual. chapter one, unpacking the printer. chapter two, "
    "connecting the cable. chapter three, loading the paper the right way round."
)
VOICED = 500  # int16 level that counts as speech in a 20 ms frame


def speech(text: str, *, phone: bool = False) -> np.ndarray:
    pcm, rate = speak(text, rate=SAMPLE_RATE)
    if phone:
        pcm, rate = phone_roundtrip(pcm, rate)
    return pcm.astype(np.int16)


def voiced_spans(pcm: np.ndarray, gap_s: float = 0.6) -> list[tuple[float, float]]:
    """(start, end) seconds of speech, merging pauses shorter than `gap_s`."""
    frames = pcm[: pcm.size // 160 * 160].reshape(-1, 160)
    loud = np.flatnonzero(np.abs(frames).max(axis=1) > VOICED)
    spans: list[list[float]] = []
    for index in loud:
        start, end = index * 0.02, (index + 1) * 0.02
        if spans and start - spans[-1][1] < gap_s:
            spans[-1][1] = end
        else:
            spans.append([start, end])
    return [(a, b) for a, b in spans]


@pytest.fixture(scope="module")
def stt() -> FasterWhisperSTT:
    return FasterWhisperSTT(models.resolve("whisper-tiny.en"))


async def heard(stt: FasterWhisperSTT, pcm: np.ndarray) -> str:
    transcript = await stt.transcribe(np.concatenate([pcm, np.zeros(4000, np.int16)]), 8000)
    return transcript.text.lower()


@pytest.fixture
async def line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Call, Call]]:
    """(caller's call, agent's call) over real SIP; the agent side recorded as the server does."""
    monkeypatch.setenv("TRUNKLINE_HOME", str(tmp_path / "home"))
    answered: asyncio.Queue[Call] = asyncio.Queue()

    async def on_incoming(incoming: IncomingCall) -> None:
        call = await incoming.answer()
        answered.put_nowait(start_recording(call, record_id(call.info.call_id)))

    async def refuse(incoming: IncomingCall) -> None:
        await incoming.reject(486, "Busy Here")

    agent = SipEndpoint(SipConfig(bind=("127.0.0.1", AGENT_SIP), rtp_ports=AGENT_RTP, user="agent"))
    caller = SipEndpoint(SipConfig(bind=("127.0.0.1", CALLER_SIP), rtp_ports=CALLER_RTP))
    await agent.start(on_incoming)
    await caller.start(refuse)
    try:
        outgoing = await caller.place_call(f"sip:agent@127.0.0.1:{AGENT_SIP}", ring_timeout_s=10)
        incoming = await asyncio.wait_for(answered.get(), 10)
        yield outgoing, incoming
    finally:
        await caller.stop()
        await agent.stop()


async def test_a_real_call_is_recorded_both_sides_on_one_clock(
    line: tuple[Call, Call], stt: FasterWhisperSTT, tmp_path: Path
) -> None:
    caller, agent = line
    assert isinstance(agent, RecordingCall) and isinstance(agent, Call)
    said = speech(CALLER_SAYS, phone=True)
    await caller.write(said.tobytes())
    await asyncio.wait_for(caller.drain(), 20)
    await asyncio.sleep(1.0)  # the agent "thinks"
    await agent.write(speech(AGENT_SAYS).tobytes())
    await asyncio.wait_for(agent.drain(), 20)
    await asyncio.sleep(0.5)
    long = speech(AGENT_IS_CUT_OFF)
    await agent.write(long.tobytes())
    await asyncio.sleep(1.0)
    assert agent.flush() > 0  # the caller barged in: the rest never goes out
    await asyncio.sleep(0.5)
    await caller.hangup()
    path = await asyncio.wait_for(agent.finish(), 10)
    assert path == recording_file(record_id(agent.info.call_id))
    assert path.is_file() and not path.with_name(path.name + ".part").exists()

    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        frames = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, 2)
    left, right = frames[:, 0].copy(), frames[:, 1].copy()
    (caller_span,) = voiced_spans(left)
    answer_span, cut_span = voiced_spans(right)
    # The caller's turn, then the agent's answer a second later: one clock for both.
    assert caller_span[1] < answer_span[0] < caller_span[1] + 2.5
    spoken = voiced_spans(said)
    said_s = spoken[-1][1] - spoken[0][0]
    assert abs((caller_span[1] - caller_span[0]) - said_s) < 0.5
    # Only the second or so that went out before the flush is in the recording.
    assert 0.5 < cut_span[1] - cut_span[0] < 2.0 < long.size / SAMPLE_RATE
    # Each channel holds one side only.
    assert np.abs(right[round(caller_span[0] * 8000) : round(caller_span[1] * 8000)]).max() < 50
    assert "printer" in await heard(stt, left) and "paper" in await heard(stt, left)
    answer = right[round(answer_span[0] * 8000) : round(answer_span[1] * 8000)]
    assert {"roll", "lid"} <= set((await heard(stt, answer)).replace(".", " ").split())

    # The API serves it to a read key once the call's record is stored.
    url = f"sqlite:///{tmp_path / 'trunkline.db'}"
    sip_id = agent.info.call_id
    async with (
        ControlPlaneStore(url) as control_plane,
        CallRecordStore(url, spool_dir=tmp_path / "spool", retry_interval_s=0) as store,
    ):
        record = CallRecord(call_id=record_id(sip_id), metadata={"sip_call_id": sip_id})
        record.ended_at, record.end_reason = record.started_at, "remote_hangup"
        await store.save(record)
        key = {"Authorization": f"Bearer {await mint_key(control_plane, 'read')}"}
        app = agent_app(
            store=store, live_sessions=dict, health=lambda: (True, {}), control_plane=control_plane
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://agent.test") as client:
            detail = (await client.get(f"/api/calls/{sip_id}", headers=key)).json()
            assert detail["recording_url"]
            response = await client.get(detail["recording_url"], headers=key)
            assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
            assert response.content == path.read_bytes()
            with wave.open(io.BytesIO(response.content)) as served:
                assert served.getnframes() == left.size
            assert (await client.get(detail["recording_url"])).status_code == 401


async def test_recording_ends_by_itself_when_the_caller_hangs_up(line: tuple[Call, Call]) -> None:
    caller, agent = line
    assert isinstance(agent, RecordingCall)
    await caller.write(speech("hello", phone=True).tobytes())
    await asyncio.wait_for(caller.drain(), 20)
    await caller.hangup()
    path = recording_file(record_id(agent.info.call_id))
    for _ in range(100):  # bounded: 10 s
        if path.is_file():
            break
        await asyncio.sleep(0.1)
    assert path.is_file(), "no recording after the call ended"
    with wave.open(str(path)) as wav:
        assert wav.getnchannels() == 2 and wav.getnframes() > 0
    assert await agent.finish() == path  # idempotent


def test_recordings_can_be_turned_off_and_odd_call_ids_get_safe_names(tmp_path: Path) -> None:
    from agent.session.recording import recording_enabled

    assert recording_enabled({}) and not recording_enabled({"TRUNKLINE_RECORD_CALLS": "off"})
    assert recording_file("abc@10.0.0.1", tmp_path) == tmp_path / "abc@10.0.0.1.wav"
    for odd in ("../../etc/passwd", "a/b", ".hidden", "x" * 65, "sp ace"):
        path = recording_file(odd, tmp_path)
        assert path.parent == tmp_path and path.name.startswith("sha256-"), odd
