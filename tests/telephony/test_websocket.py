"""The WebSocket media transport, driven by a plain websockets client (what the
browser console does) and by our own endpoint dialling out."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from websockets.asyncio.client import connect

from telephony.interface import CallFailed, EndReason
from telephony.websocket import WebSocketEndpoint
from tests.telephony.audio_checks import dominant_frequency, level_dbfs, tone, voiced
from tests.telephony.conftest import Answerer

WS_PORT = 15900


@pytest.fixture
async def ws_server():
    answerer = Answerer()
    server = WebSocketEndpoint("127.0.0.1", WS_PORT)
    await server.start(answerer)
    yield server, answerer
    await server.stop()


async def test_browser_style_client_call(ws_server):
    _, answerer = ws_server
    received = bytearray()
    controls = []
    async with connect(f"ws://127.0.0.1:{WS_PORT}/") as ws:
        await ws.send(json.dumps({"type": "start", "caller": "browser", "callee": "agent"}))
        answered = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert answered["type"] == "answered"

        async def read():
            async for message in ws:
                if isinstance(message, bytes):
                    received.extend(message)
                else:
                    controls.append(json.loads(message))

        reader = asyncio.create_task(read())
        pcm = tone(1000, 1.0, -12).tobytes()
        for start in range(0, len(pcm), 640):  # 40 ms chunks, at real time
            await ws.send(pcm[start : start + 640])
            await asyncio.sleep(0.04)
        await ws.send("this is not json")
        await ws.send(b"\x01\x02\x03")  # odd length
        await ws.send(json.dumps({"type": "dtmf", "digit": "7", "duration_ms": 100}))
        await asyncio.sleep(0.3)
        await ws.send(json.dumps({"type": "hangup"}))
        await asyncio.wait_for(reader, 5)
    (record,) = await answerer.wait_calls(1)
    assert record.reason is EndReason.REMOTE_HANGUP
    heard = voiced(record.pcm())
    assert dominant_frequency(heard) == pytest.approx(1000, abs=10)
    assert level_dbfs(heard) == pytest.approx(-15, abs=0.5)
    assert len(heard) >= 0.9 * 8000
    assert [e.digit for e in record.dtmf] == ["7"]
    errors = [c for c in controls if c["type"] == "error"]
    assert len(errors) == 2  # bad input answered with errors; the call went on
    ours = voiced(np.frombuffer(bytes(received), "<i2"))
    assert dominant_frequency(ours) == pytest.approx(600, abs=10)
    assert level_dbfs(ours) == pytest.approx(-15, abs=0.5)


async def test_endpoint_dials_out_sends_dtmf_flushes_and_hangs_up(ws_server):
    _, answerer = ws_server
    answerer.reply_tone_hz = None
    client = WebSocketEndpoint("127.0.0.1", 0)
    try:
        call = await client.place_call(f"ws://127.0.0.1:{WS_PORT}/", ring_timeout_s=5)
        await call.write(tone(500, 10.0).tobytes())
        await asyncio.sleep(0.5)
        dropped = call.flush()
        assert dropped > 8 * 8000  # barge-in: the rest of the 10 s never goes out
        await asyncio.wait_for(call.drain(), 0.1)
        await call.send_dtmf("12")
        await asyncio.sleep(0.3)
        await call.hangup()
        assert call.end_reason is EndReason.LOCAL_HANGUP
        (record,) = await answerer.wait_calls(1)
        assert record.reason is EndReason.REMOTE_HANGUP
        assert [e.digit for e in record.dtmf] == ["1", "2"]
        assert len(voiced(record.pcm())) < 1.0 * 8000
    finally:
        await client.stop()


async def test_rejected_and_unreachable_calls_fail_clearly(ws_server):
    _, answerer = ws_server
    answerer.reject_code = 486
    client = WebSocketEndpoint("127.0.0.1", 0)
    try:
        with pytest.raises(CallFailed) as failed:
            await client.place_call(f"ws://127.0.0.1:{WS_PORT}/", ring_timeout_s=5)
        assert failed.value.reason is EndReason.BUSY
        with pytest.raises(CallFailed) as failed:
            await client.place_call("ws://127.0.0.1:15999/", ring_timeout_s=2)
        assert failed.value.reason is EndReason.FAILED
    finally:
        await client.stop()
