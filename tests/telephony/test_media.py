import asyncio
import socket

import numpy as np
import pytest

from telephony.clock import MediaClock
from telephony.media import RtpSession, bind_rtp_socket
from tests.telephony.audio_checks import dominant_frequency, level_dbfs, tone, voiced

PORTS = (15700, 15760)


async def collect(session: RtpSession, seconds: float) -> np.ndarray:
    frames: list[bytes] = []

    async def reader() -> None:
        async for frame in session.audio_in():
            frames.append(frame)

    task = asyncio.create_task(reader())
    await asyncio.sleep(seconds)
    task.cancel()
    return np.frombuffer(b"".join(frames), "<i2")


@pytest.fixture
async def pair():
    clock = MediaClock()
    a_sock, b_sock = bind_rtp_socket("127.0.0.1", PORTS), bind_rtp_socket("127.0.0.1", PORTS)
    a = RtpSession(a_sock, clock, payload_type=8, remote=b_sock.getsockname())
    b = RtpSession(b_sock, clock, payload_type=8, remote=a_sock.getsockname())
    await a.start()
    await b.start()
    yield a, b
    a.close()
    b.close()
    await clock.stop()


async def test_tone_crosses_with_frequency_and_level(pair) -> None:
    a, b = pair
    await a.write(tone(1000, 1.0, -20).tobytes())
    heard = voiced(await collect(b, 1.3))
    assert len(heard) > 0.9 * 8000
    assert dominant_frequency(heard) == pytest.approx(1000, abs=10)
    assert level_dbfs(heard) == pytest.approx(-23, abs=1.0)  # sine RMS is 3 dB below peak


async def test_flush_stops_audio_within_a_frame(pair) -> None:
    a, b = pair
    listening = asyncio.create_task(collect(b, 1.0))
    await asyncio.sleep(0.1)
    before = a.stats.packets_out
    await a.write(tone(500, 5.0).tobytes())
    await asyncio.sleep(0.3)
    dropped = a.flush()
    tone_frames = a.stats.packets_out - before
    await asyncio.wait_for(a.drain(), 0.05)
    assert dropped > 4 * 8000
    heard = voiced(await listening)
    assert abs(len(heard) // 160 - tone_frames) <= 1, "audio kept coming after flush"
    assert a.stats.packets_out > before + tone_frames  # silence keeps the stream up


async def test_dtmf_both_ways(pair) -> None:
    a, b = pair
    await asyncio.wait_for(a.send_dtmf("12#"), 3)

    async def first_three():
        got = []
        async for event in b.dtmf_in():
            got.append(event.digit)
            if len(got) == 3:
                return got

    assert await asyncio.wait_for(first_three(), 2) == ["1", "2", "#"]


async def test_garbage_ignored_and_symmetric_rtp() -> None:
    clock = MediaClock()
    sock = bind_rtp_socket("127.0.0.1", PORTS)
    port = sock.getsockname()[1]
    # SDP said the peer is somewhere that does not exist; real RTP comes from elsewhere
    session = RtpSession(sock, clock, payload_type=0, remote=("127.0.0.1", 9))
    await session.start()
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(1.0)
    try:
        for junk in (b"", b"\xff" * 3, b"SIP/2.0 200 OK\r\n\r\n", bytes(1500)):
            peer.sendto(junk, ("127.0.0.1", port))
        from telephony.rtp import RtpPacket

        peer.sendto(RtpPacket(0, 1, 0, 42, b"\xff" * 160).build(), ("127.0.0.1", port))
        data, _ = await asyncio.get_running_loop().run_in_executor(None, peer.recvfrom, 2048)
        assert len(data) == 12 + 160
        assert session.stats.garbage_in == 4
        assert session.remote == peer.getsockname()
    finally:
        peer.close()
        session.close()
        await clock.stop()


async def test_inactivity_timeout_ends_the_session() -> None:
    clock = MediaClock()
    ended = asyncio.Event()
    sock = bind_rtp_socket("127.0.0.1", PORTS)
    session = RtpSession(
        sock, clock, remote=("127.0.0.1", 9), inactivity_timeout_s=0.3, on_timeout=ended.set
    )
    await session.start()
    await asyncio.wait_for(ended.wait(), 2)
    assert session.closed
    await clock.stop()
