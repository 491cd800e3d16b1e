"""Barge-in's two steps on a real WebSocket call: a pause takes the agent's queued audio
off the wire at once and keeps it; resume sends the rest from where it stopped (nothing
lost or repeated); flush after a pause drops it and says exactly what was played."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest

from agent.session.barge_in import SpokenSegment
from agent.session.playout import Playout
from telephony.interface import SAMPLE_RATE, Call
from telephony.websocket import WebSocketEndpoint
from tests.agent.session_peer import Caller

pytestmark = pytest.mark.timeout(60)


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


@pytest.fixture
async def line() -> AsyncIterator[tuple[Call, Caller]]:
    """An answered WebSocket call: the agent's side and our caller."""
    answered: asyncio.Queue[Call] = asyncio.Queue()

    async def on_incoming(incoming) -> None:
        await answered.put(await incoming.answer())

    endpoint = WebSocketEndpoint("127.0.0.1", 0)
    await endpoint.start(on_incoming)
    caller = Caller(f"ws://127.0.0.1:{endpoint.port}/")
    await caller.dial()
    call = await asyncio.wait_for(answered.get(), 10)
    yield call, caller
    await caller.close()
    await endpoint.stop()


def voiced_s(caller: Caller, since: float, until: float = float("inf")) -> float:
    return len([t for t in caller.voiced_times(since) if t < until]) * 0.020


async def test_a_pause_stops_the_audio_and_resume_plays_the_rest_once(line):
    call, caller = line
    playout = Playout(call)
    segment = SpokenSegment("a long sentence", 0, 0)
    written_at = time.monotonic()
    await playout.write(tone(3.0), segment)
    await asyncio.sleep(1.0)
    assert playout.pause(max_s=5.0)
    paused_at = time.monotonic()
    assert playout.paused and playout.playing  # still the agent's turn to speak
    await playout.write(tone(1.0), segment)  # the reply goes on while paused: held
    await asyncio.sleep(0.6)
    # Nothing voiced arrives a frame or two after the pause.
    assert voiced_s(caller, paused_at + 0.06, paused_at + 0.6) == 0.0
    await playout.resume()
    assert not playout.paused
    await asyncio.wait_for(call.drain(), 10)
    await asyncio.sleep(0.2)
    # Every sample went out exactly once: 4 s of tone, a frame or two either way.
    total = voiced_s(caller, written_at)
    assert abs(total - 4.0) <= 0.08, total
    assert playout.position == 4 * SAMPLE_RATE and segment.end == playout.position


async def test_flush_after_a_pause_drops_the_held_audio_and_reports_what_played(line):
    call, caller = line
    playout = Playout(call)
    written_at = time.monotonic()
    await playout.write(tone(3.0))
    await asyncio.sleep(1.0)
    assert playout.pause(max_s=5.0)
    heard_until = playout.flush()
    assert not playout.paused and not playout.playing
    await asyncio.sleep(0.5)
    played_s = voiced_s(caller, written_at)
    # The stream position after the flush is what the caller got (about 1 s).
    assert abs(heard_until / SAMPLE_RATE - played_s) <= 0.08, (heard_until, played_s)
    assert 0.8 <= played_s <= 1.3


async def test_an_unresolved_pause_resumes_by_itself(line):
    call, caller = line
    playout = Playout(call)
    written_at = time.monotonic()
    await playout.write(tone(2.0))
    await asyncio.sleep(0.5)
    assert playout.pause(max_s=0.3)
    await asyncio.sleep(0.6)
    assert not playout.paused
    await asyncio.wait_for(call.drain(), 10)
    await asyncio.sleep(0.2)
    assert abs(voiced_s(caller, written_at) - 2.0) <= 0.08


async def test_pause_does_nothing_when_the_agent_is_quiet(line):
    call, _ = line
    playout = Playout(call)
    assert not playout.pause(max_s=1.0)
    assert not playout.paused
