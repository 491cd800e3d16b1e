"""`Call.audio_out_started_at`: when the first frame of a burst of agent audio really
left, checked against packets received on loopback, and the session's
`first_packet_out` trace stage built on it.
"""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest
from websockets.asyncio.client import connect

from agent.session import SessionOptions
from telephony.clock import MediaClock
from telephony.g711 import PCMU, ulaw_encode
from telephony.interface import FRAME_SAMPLES
from telephony.media import RtpSession, bind_rtp_socket
from telephony.rtp import parse_rtp
from telephony.websocket import WebSocketEndpoint, WsCall
from tests.agent.session_peer import caller_speech
from tests.agent.test_session_call import QUIET, engines, start_agent  # noqa: F401 (fixtures)
from tests.telephony.audio_checks import tone

PORTS = (15860, 15880)
SILENCE_PAYLOAD = ulaw_encode(np.zeros(FRAME_SAMPLES, dtype=np.int16))


class Receiver(asyncio.DatagramProtocol):
    """A plain UDP socket that timestamps every RTP packet as it arrives."""

    def __init__(self) -> None:
        self.packets: list[tuple[float, bool]] = []  # (arrival monotonic, carries audio)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        packet = parse_rtp(data)
        self.packets.append((time.monotonic(), packet.payload != SILENCE_PAYLOAD))

    def first_audio(self, since: float = 0.0) -> tuple[float, float]:
        """(arrival of the packet before the first audio packet after `since`, its own)."""
        previous = since
        for at, audio in self.packets:
            if at >= since and audio:
                return previous, at
            previous = at
        raise AssertionError("no audio packet arrived")


@pytest.fixture
async def rtp_to_receiver():
    loop = asyncio.get_running_loop()
    receiver = Receiver()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: receiver, local_addr=("127.0.0.1", 0)
    )
    clock = MediaClock()
    session = RtpSession(
        bind_rtp_socket("127.0.0.1", PORTS),
        clock,
        payload_type=PCMU,
        remote=transport.get_extra_info("sockname")[:2],
    )
    await session.start()
    yield session, receiver
    session.close()
    transport.close()
    await clock.stop()


async def test_rtp_timestamp_is_when_the_first_audio_packet_left(rtp_to_receiver) -> None:
    session, receiver = rtp_to_receiver
    await asyncio.sleep(0.1)  # silence flows: no burst yet
    assert session.audio_out_started_at is None
    written = time.monotonic()
    await session.write(tone(800, 0.2, -12).tobytes())
    await asyncio.sleep(0.4)
    started = session.audio_out_started_at
    assert started is not None and started >= written
    # Bracketed by what the far end received: after the last silence packet arrived,
    # no later than the first audio packet's arrival.
    silence_at, audio_at = receiver.first_audio(written)
    assert silence_at <= started <= audio_at
    print(f"\nwrite -> sent {1000 * (started - written):.1f} ms; "
          f"sent -> received {1000 * (audio_at - started):.2f} ms")  # fmt: skip


async def test_rtp_timestamp_is_kept_through_a_burst_and_renewed_by_the_next(
    rtp_to_receiver,
) -> None:
    session, receiver = rtp_to_receiver
    await session.write(tone(800, 0.3, -12).tobytes())
    await asyncio.sleep(0.1)
    first = session.audio_out_started_at
    assert first is not None
    await session.write(tone(600, 0.1, -12).tobytes())  # more audio while it plays
    await session.drain()
    assert session.audio_out_started_at == first  # still the same burst
    await asyncio.sleep(0.1)  # quiet: silence goes out, the burst is over
    again = time.monotonic()
    await session.write(tone(600, 0.1, -12).tobytes())
    await asyncio.sleep(0.1)
    second = session.audio_out_started_at
    assert second is not None and second >= again
    assert receiver.first_audio(again)[1] >= second
    # Barge-in flushes: what is written next is a new burst too.
    session.flush()
    await asyncio.sleep(0.05)
    third_written = time.monotonic()
    await session.write(tone(600, 0.1, -12).tobytes())
    await asyncio.sleep(0.1)
    third = session.audio_out_started_at
    assert third is not None and third >= third_written


async def test_websocket_timestamp_is_when_the_first_frame_was_sent() -> None:
    endpoint = WebSocketEndpoint("127.0.0.1", 0)
    answered: asyncio.Queue[WsCall] = asyncio.Queue()

    async def on_incoming(incoming) -> None:
        await answered.put(await incoming.answer())

    await endpoint.start(on_incoming)
    try:
        async with connect(f"ws://127.0.0.1:{endpoint.port}/") as ws:
            await ws.send(json.dumps({"type": "start", "caller": "test", "callee": "agent"}))
            assert json.loads(await ws.recv())["type"] == "answered"
            call = await asyncio.wait_for(answered.get(), 5)
            assert call.audio_out_started_at is None
            written = time.monotonic()
            await call.write(tone(800, 0.1, -12).tobytes())
            first = await asyncio.wait_for(ws.recv(), 2)
            arrived = time.monotonic()
            assert isinstance(first, bytes)
            started = call.audio_out_started_at
            assert started is not None and written <= started <= arrived
            print(f"\nwrite -> sent {1000 * (started - written):.1f} ms; "
                  f"sent -> received {1000 * (arrived - started):.2f} ms")  # fmt: skip
            await call.hangup()
    finally:
        await endpoint.stop()


@pytest.mark.timeout(180)
async def test_session_marks_first_packet_out_after_the_audio_was_written(
    engines,  # noqa: F811
    start_agent,  # noqa: F811
) -> None:
    # No holding line: the reply must start its own burst of audio (behind a holding
    # line still playing, the transport has no new burst to report and the stage stays unset)
    agent, caller = await start_agent(SessionOptions(**QUIET, holding_after_s=30.0))
    await caller.wait_voice(0.0, 60)
    await agent.until_idle(30)
    await caller.say(caller_speech("How do I change the paper roll?"))
    await agent.until_idle(90, turns=1)
    await asyncio.sleep(0.3)
    trace = agent.session.record.turns[0]
    assert trace.first_audio_written is not None
    assert trace.first_packet_out is not None, trace.to_dict()
    assert trace.first_packet_out >= trace.first_audio_written
    # The caller cannot hear the reply before its first frame was sent.
    arrived = next(t for t, _ in caller.frames if t >= trace.first_audio_written)
    assert arrived >= trace.first_packet_out
    assert trace.turn_latency_ms == trace.stages_ms()["first_packet_out"]
    print(
        f"\nwritten -> packet out {1000 * (trace.first_packet_out - trace.first_audio_written):.1f}"
        f" ms; packet out -> caller received {1000 * (arrived - trace.first_packet_out):.2f} ms;"
        f" turn latency {trace.turn_latency_ms} ms"
    )
    await caller.close()
