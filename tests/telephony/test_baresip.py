"""baresip as the peer: it calls us, and we call it (auto-answer) and hang up."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from telephony.interface import EndReason
from tests.telephony.audio_checks import dominant_frequency, level_dbfs, tone, voiced
from tests.telephony.conftest import SIP_PORT
from tests.telephony.peers import (
    baresip_config,
    baresip_heard,
    require,
    run_baresip,
)

BARESIP_PORT = 15500
BARESIP_RTP = (15510, 15530)


def source_wav(tmp_path):
    # baresip's aufile wants 16-bit PCM
    import subprocess

    path = tmp_path / "src.wav"
    pcm = tone(800, 3.0, -12).astype("<i2").tobytes()
    cmd = [require("sox"), "-t", "raw", "-r", "8000", "-e", "signed", "-b", "16", "-c", "1", "-"]
    subprocess.run([*cmd, str(path)], input=pcm, check=True, capture_output=True)
    return path


async def test_baresip_calls_in_audio_both_ways(endpoint, answerer, tmp_path):
    folder = baresip_config(tmp_path / "bs", sip_port=BARESIP_PORT, rtp_range=BARESIP_RTP,
                            source_wav=source_wav(tmp_path))  # fmt: skip
    out = await run_baresip(folder, command=f"/dial sip:echo@127.0.0.1:{SIP_PORT}",
                            quit_after_s=8)  # fmt: skip
    assert "Call established" in out, out[-2000:]
    (record,) = await answerer.wait_calls(1)
    assert record.reason is EndReason.REMOTE_HANGUP  # baresip hangs up at the end of its file
    heard = voiced(record.pcm())
    assert len(heard) >= 2.0 * 8000
    assert dominant_frequency(heard) == pytest.approx(800, abs=10)
    assert level_dbfs(heard) == pytest.approx(-15, abs=1.0)
    theirs = voiced(baresip_heard(folder))
    assert len(theirs) >= 2.0 * 8000
    assert dominant_frequency(theirs) == pytest.approx(600, abs=10)
    assert level_dbfs(theirs) == pytest.approx(-15, abs=1.0)


async def test_we_call_baresip_send_dtmf_and_hang_up(endpoint, tmp_path):
    folder = baresip_config(tmp_path / "bs", sip_port=BARESIP_PORT, rtp_range=BARESIP_RTP,
                            source_wav=source_wav(tmp_path), auto_answer=True)  # fmt: skip
    peer = asyncio.create_task(run_baresip(folder, command=None, quit_after_s=9))
    await asyncio.sleep(1.0)  # baresip starts listening
    call = await endpoint.place_call(f"sip:baresip@127.0.0.1:{BARESIP_PORT}", ring_timeout_s=5)
    heard: list[bytes] = []

    async def listen():
        async for frame in call.audio_in():
            heard.append(frame)

    listener = asyncio.create_task(listen())
    await call.write(tone(600, 2.0, -12).tobytes())
    await asyncio.wait_for(call.drain(), 5)
    await asyncio.wait_for(call.send_dtmf("42"), 5)
    started = time.monotonic()
    await call.hangup()
    bye_s = time.monotonic() - started
    assert call.end_reason is EndReason.LOCAL_HANGUP
    assert await call.wait_ended() is EndReason.LOCAL_HANGUP
    listener.cancel()
    out = await peer
    assert "terminated" in out, out[-2000:]  # baresip took our BYE (and our ACK/To-tag)
    assert bye_s < 2.0, "BYE was not answered: the dialog was not recognised"
    for digit in "42":  # RFC 4733 events, each seen ending by baresip
        assert f"received event: '{digit}' (end=1)" in out, out[-3000:]
    theirs = voiced(baresip_heard(folder))
    assert dominant_frequency(theirs) == pytest.approx(600, abs=10)
    assert len(theirs) >= 1.5 * 8000
    ours = voiced(np.frombuffer(b"".join(heard), "<i2"))
    assert dominant_frequency(ours) == pytest.approx(800, abs=10)


async def test_ring_timeout_cancels_and_reports_no_answer(endpoint, tmp_path):
    # baresip without auto-answer just rings
    folder = baresip_config(tmp_path / "bs", sip_port=BARESIP_PORT, rtp_range=BARESIP_RTP,
                            source_wav=source_wav(tmp_path))  # fmt: skip
    peer = asyncio.create_task(run_baresip(folder, command=None, quit_after_s=6))
    await asyncio.sleep(1.0)
    from telephony.interface import CallFailed

    started = time.monotonic()
    with pytest.raises(CallFailed) as failed:
        await endpoint.place_call(f"sip:baresip@127.0.0.1:{BARESIP_PORT}", ring_timeout_s=2)
    assert failed.value.reason is EndReason.NO_ANSWER
    assert time.monotonic() - started < 4.0
    out = await peer
    assert "Incoming call" in out or "incoming call" in out, out[-2000:]
    assert "Call established" not in out
