"""Interruptions over real SIP against `trunkline serve`: barge-in stops the agent's RTP
audio, a caller hanging up mid-reply ends the work and is recorded (and the next call
is served), and SIGTERM hangs up live calls and saves their records."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
import pytest

from agent.app.dialer import AgentListener, DialOptions, dial
from agent.records import CallRecordStore
from telephony.interface import SAMPLE_RATE, Call, EndReason
from tests.e2e.conftest import CALLER_RTP, CONVERSATION, _run_stack, caller_speech, words
from tests.e2e.stack import stop_stack

pytestmark = pytest.mark.timeout(240)

LONG_GREETING = (
    "Hi, this is Maya from store support. I can help with receipt printers, scanners, "
    "registers and network problems, and I can check the status of your store systems "
    "while we talk. Tell me what is going on and we will sort it out together."
)


@pytest.fixture(scope="module")
def long_stack(tmp_path_factory):
    agent = {**CONVERSATION, "greeting": LONG_GREETING}
    yield from _run_stack(tmp_path_factory, "serve-long", 16061, (16500, 16599), agent)


@asynccontextmanager
async def caller(uri: str, sip_port: int) -> AsyncIterator[tuple[Call, AgentListener]]:
    options = DialOptions(bind=("127.0.0.1", sip_port), rtp_ports=CALLER_RTP, ring_timeout_s=15)
    endpoint, call = await dial(uri, options)
    listener = AgentListener(call)
    listener.start()
    try:
        yield call, listener
    finally:
        await call.hangup()
        await listener.stop()
        await endpoint.stop()


def voice_onset_s(pcm: np.ndarray, level: int = 1000) -> float:
    loud = np.flatnonzero(np.abs(pcm) > level)
    return float(loud[0]) / SAMPLE_RATE if loud.size else 0.0


async def test_barge_in_stops_the_agent_audio_on_the_wire(long_stack):
    interruption = caller_speech("Sorry, wait. My printer is jammed.")
    async with caller(long_stack.uri, 16075) as (call, listener):
        first = await listener.wait_voice(0.0, 30)
        assert first is not None, "no greeting"
        await asyncio.sleep(2.5)  # well into the (12 s) greeting
        said_at = time.monotonic()
        await call.write(interruption.tobytes())  # the send queue was empty: goes out now
        voice_at = said_at + voice_onset_s(interruption)
        await asyncio.sleep(interruption.size / SAMPLE_RATE + 0.5)
        call_id = call.info.call_id
    record = await long_stack.record(call_id)
    barge_ins = [e for e in record["events"] if e["kind"] == "barge_in"]
    assert barge_ins, record["events"]
    flushed_at = barge_ins[0]["monotonic"]  # CLOCK_MONOTONIC: the same clock on this host
    # The first voiced frame paused the agent's audio; 0.3 s of voice confirmed the
    # barge-in and dropped it.
    paused = [e for e in record["events"] if e["kind"] == "barge_in_pause"]
    assert paused and paused[0]["monotonic"] <= flushed_at, record["events"]
    paused_at = paused[0]["monotonic"]
    # The agent's reply to the interruption cannot start within 1 s of the flush.
    before_reply = [t for t in listener.voiced_times(first) if t < flushed_at + 1.0]
    last_voiced = max(before_reply)
    print(
        f"\ncaller voice on the wire -> server pause {1000 * (paused_at - voice_at):.0f} ms, "
        f"flush {1000 * (flushed_at - voice_at):.0f} ms; "
        f"caller voice -> last voiced agent frame received {1000 * (last_voiced - voice_at):.0f} ms"
    )
    # Measured on received RTP, out of the caller's jitter buffer: the caller's voice
    # crosses the agent's jitter buffer (60 ms), one or two 32 ms VAD frames, then the
    # agent's last packets cross the caller's jitter buffer (60 ms).
    assert last_voiced - voice_at <= 0.3
    greeting = next(e for e in record["transcript"] if e["kind"] == "greeting")
    assert greeting["interrupted"] and LONG_GREETING.startswith(greeting["text"])
    assert len(greeting["text"]) < len(LONG_GREETING) // 2, greeting


async def test_caller_hangup_mid_reply_is_recorded_and_the_next_call_is_served(long_stack):
    async with caller(long_stack.uri, 16076) as (call, listener):
        first = await listener.wait_voice(0.0, 30)
        assert first is not None
        await listener.wait_quiet(first, 1.2, 30)  # let the greeting finish
        question = caller_speech("My receipt printer does not print. What should I check?")
        await call.write(question.tobytes())
        await call.drain()
        reply = await listener.wait_voice(time.monotonic(), 60)
        assert reply is not None, "no reply"
        await asyncio.sleep(1.0)  # mid-reply
        call_id = call.info.call_id
    record = await long_stack.record(call_id)  # saved once the session wound down
    assert record["end_reason"] == EndReason.REMOTE_HANGUP.value, record
    assert record["outcome"] == "completed", record
    replies = [e for e in record["transcript"] if e["speaker"] == "agent" and e["kind"] == "speech"]
    assert replies and replies[-1]["interrupted"], record["transcript"]
    # what was heard is a prefix of what was meant: the rest was never sent
    assert len(replies[-1]["text"]) < len(replies[-1]["intended_text"]), replies[-1]

    async with caller(long_stack.uri, 16077) as (_, listener):
        assert await listener.wait_voice(0.0, 30) is not None, "the next call got no greeting"


async def test_sigterm_hangs_up_live_calls_and_saves_their_records(long_stack):
    async with caller(long_stack.uri, 16078) as (call, listener):
        assert await listener.wait_voice(0.0, 30) is not None
        await asyncio.sleep(3.0)  # some of the greeting heard
        call_id = call.info.call_id
        code = await stop_stack(long_stack)
        assert code == 0, long_stack.log()[-3000:]
        # the server said BYE before exiting
        assert call.end_reason is EndReason.REMOTE_HANGUP
    db = long_stack.home / "trunkline.db"
    async with CallRecordStore(
        f"sqlite:///{db}", spool_dir=long_stack.home / "spool" / "calls"
    ) as store:
        saved = await store.get_call(call_id)
    assert saved is not None and saved.ended_at is not None
    assert saved.end_reason == EndReason.LOCAL_HANGUP.value, saved
    assert "store support" in " ".join(t.heard_text or "" for t in saved.turns).lower()
    assert words(" ".join(t.text for t in saved.turns)) & {"maya", "support"}
