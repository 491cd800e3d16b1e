"""sipp as the caller: G.711 calls with audio checked both ways, CANCEL,
OPTIONS, DTMF, hold, garbage, concurrency."""

from __future__ import annotations

import asyncio
import itertools
import socket

import numpy as np
import pytest

from telephony.interface import EndReason
from telephony.sip_endpoint import SipConfig, SipEndpoint
from tests.telephony.audio_checks import dominant_frequency, level_dbfs, tone, voiced
from tests.telephony.conftest import RTP_PORTS, SIP_PORT
from tests.telephony.peers import RtpCapture, render, run_sipp, write_rtp_pcap

TARGET = f"127.0.0.1:{SIP_PORT}"
SIPP_PORT = 15400
SIPP_MEDIA = 15420


@pytest.mark.parametrize(("codec", "pt"), [("PCMU", 0), ("PCMA", 8)])
async def test_sipp_call_audio_both_ways(endpoint, answerer, tmp_path, codec, pt):
    pcap = write_rtp_pcap(tmp_path / "caller.pcap", tone(1000, 3.0, -12), pt)
    scenario = render("uac_tone.xml", tmp_path / "uac.xml", pt=pt, codec=codec, pcap=pcap,
                      hold_ms=3300)  # fmt: skip
    async with RtpCapture(tmp_path / "rtp.pcap", SIPP_MEDIA) as capture:
        result = await run_sipp(scenario, TARGET, port=SIPP_PORT, media_port=SIPP_MEDIA,
                                extra=["-s", "echo", "-m", "1"])  # fmt: skip
    result.check()
    (record,) = await answerer.wait_calls(1)
    assert record.reason is EndReason.REMOTE_HANGUP
    # caller -> us: sipp's 1 kHz tone at -12 dBFS peak (-15 dBFS RMS), decoded at 16 bits
    heard = voiced(record.pcm())
    assert len(heard) >= 2.5 * 8000
    assert dominant_frequency(heard) == pytest.approx(1000, abs=10)
    assert level_dbfs(heard) == pytest.approx(-15, abs=1.0)
    # us -> caller: our 600 Hz reply tone, in the negotiated codec, on the wire
    sent = voiced(capture.audio(pt))
    assert len(sent) >= 2.5 * 8000
    assert dominant_frequency(sent) == pytest.approx(600, abs=10)
    assert level_dbfs(sent) == pytest.approx(-15, abs=1.0)
    assert {p.payload_type for _, p in capture.packets()} == {pt}


async def test_cancel_before_answer_gets_487_and_is_never_answered(endpoint, answerer, tmp_path):
    answerer.answer_delay_s = 2.0  # still ringing when the caller gives up
    scenario = render("uac_cancel.xml", tmp_path / "cancel.xml")
    result = await run_sipp(scenario, TARGET, port=SIPP_PORT, media_port=SIPP_MEDIA,
                            extra=["-s", "echo", "-m", "1"])  # fmt: skip
    result.check()  # sipp saw 200 for its CANCEL and 487 for the INVITE
    (record,) = await answerer.wait_calls(1)
    assert record.call is None
    assert record.failure is not None and record.failure.reason is EndReason.CANCELLED
    received = result.messages.split("message received")[1:]
    answered = [m for m in received if "SIP/2.0 200" in m and "CSeq: 1 INVITE" in m]
    assert answered == [], "the cancelled INVITE was answered"


async def test_options_answered_200(endpoint, tmp_path):
    scenario = render("options.xml", tmp_path / "options.xml")
    result = await run_sipp(scenario, TARGET, port=SIPP_PORT, media_port=SIPP_MEDIA,
                            extra=["-s", "echo", "-m", "1"])  # fmt: skip
    result.check()


async def test_dtmf_digits_received(endpoint, answerer, tmp_path):
    pcap = write_rtp_pcap(tmp_path / "dtmf.pcap", tone(1000, 0.5, -12), 0, dtmf="159#")
    scenario = render("uac_tone.xml", tmp_path / "uac.xml", pt=0, codec="PCMU", pcap=pcap,
                      hold_ms=2500)  # fmt: skip
    result = await run_sipp(scenario, TARGET, port=SIPP_PORT, media_port=SIPP_MEDIA,
                            extra=["-s", "echo", "-m", "1"])  # fmt: skip
    result.check()
    (record,) = await answerer.wait_calls(1)
    assert [e.digit for e in record.dtmf] == ["1", "5", "9", "#"]
    assert all(e.duration_ms == 160 for e in record.dtmf)


async def test_reinvite_hold_and_resume_never_duplicates_rtp(endpoint, answerer, tmp_path):
    pcap = write_rtp_pcap(tmp_path / "a.pcap", tone(1000, 1.0, -12), 0)
    scenario = render("uac_hold.xml", tmp_path / "hold.xml", pcap=pcap)
    async with RtpCapture(tmp_path / "rtp.pcap", SIPP_MEDIA) as capture:
        result = await run_sipp(scenario, TARGET, port=SIPP_PORT, media_port=SIPP_MEDIA,
                                extra=["-s", "echo", "-m", "1"])  # fmt: skip
    result.check()  # the answers carried a=recvonly on hold and a=sendrecv on resume
    (record,) = await answerer.wait_calls(1)
    assert record.reason is EndReason.REMOTE_HANGUP
    packets = capture.packets()
    # one sender (one source port, one SSRC) for the whole call, re-INVITEs included
    assert len({src for src, _ in packets}) == 1
    assert len({p.ssrc for _, p in packets}) == 1
    seqs = [p.sequence for _, p in packets]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
    # on hold we went quiet: the timestamps jump by about the 1.5 s hold
    jumps = [
        (b.timestamp - a.timestamp) & 0xFFFFFFFF for (_, a), (_, b) in itertools.pairwise(packets)
    ]
    assert max(jumps) >= 1.0 * 8000
    assert sum(j > 160 for j in jumps) == 1


async def test_garbage_on_sip_and_rtp_ports_is_ignored(endpoint, answerer, tmp_path):
    junk = [b"", b"\r\n\r\n", b"\x00\xff" * 700, b"hello", b"SIP/2.0 200 OK\r\n\r\n",
            b"INVITE sip:x SIP/2.0\r\nVia: nonsense\r\n\r\n", bytes(range(256))]  # fmt: skip
    pcap = write_rtp_pcap(tmp_path / "a.pcap", tone(1000, 2.0, -12), 0)
    scenario = render("uac_tone.xml", tmp_path / "uac.xml", pt=0, codec="PCMU", pcap=pcap,
                      hold_ms=2300)  # fmt: skip
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for data in junk:
            sock.sendto(data, ("127.0.0.1", SIP_PORT))
        call = asyncio.create_task(
            run_sipp(
                scenario,
                TARGET,
                port=SIPP_PORT,
                media_port=SIPP_MEDIA,
                extra=["-s", "echo", "-m", "1"],
            )
        )
        async with asyncio.timeout(10):
            while not answerer.records or answerer.records[0].call is None:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        rtp_port = answerer.records[0].call.session.local[1]
        for _ in range(3):
            for data in junk:
                sock.sendto(data, ("127.0.0.1", rtp_port))
            await asyncio.sleep(0.2)
        result = await call
    finally:
        sock.close()
    result.check()
    (record,) = await answerer.wait_calls(1)
    assert record.call.session.stats.garbage_in >= 3 * (len(junk) - 1)
    heard = voiced(record.pcm())
    assert dominant_frequency(heard) == pytest.approx(1000, abs=10)
    assert len(heard) >= 1.5 * 8000


async def test_twenty_concurrent_calls(endpoint, answerer, tmp_path):
    pcap = write_rtp_pcap(tmp_path / "a.pcap", tone(1000, 2.0, -12), 0)
    scenario = render("uac_tone.xml", tmp_path / "uac.xml", pt=0, codec="PCMU", pcap=pcap,
                      hold_ms=2500)  # fmt: skip
    result = await run_sipp(
        scenario, TARGET, port=SIPP_PORT, media_port=SIPP_MEDIA,
        extra=["-s", "echo", "-m", "20", "-l", "20", "-r", "20"], timeout_s=40,
    )  # fmt: skip
    result.check()
    records = await answerer.wait_calls(20, timeout_s=30)
    assert len({r.call.info.call_id for r in records}) == 20
    for record in records:
        assert record.reason is EndReason.REMOTE_HANGUP
        heard = voiced(record.pcm())
        assert len(heard) >= 1.5 * 8000, record.call.session.stats
        assert dominant_frequency(heard) == pytest.approx(1000, abs=10)
    levels = np.array([level_dbfs(voiced(r.pcm())) for r in records])
    assert np.all(np.abs(levels + 15) < 1.0)


async def test_rtp_inactivity_ends_the_call_with_a_bye(answerer, tmp_path):
    config = SipConfig(bind=("127.0.0.1", SIP_PORT), rtp_ports=RTP_PORTS, media_timeout_s=1.0)
    endpoint = SipEndpoint(config)
    await endpoint.start(answerer)
    try:
        pcap = write_rtp_pcap(tmp_path / "a.pcap", tone(1000, 0.5, -12), 0)
        scenario = render("uac_media_stops.xml", tmp_path / "stops.xml", pt=0, codec="PCMU",
                          pcap=pcap, bye_within_ms=5000)  # fmt: skip
        result = await run_sipp(scenario, TARGET, port=SIPP_PORT, media_port=SIPP_MEDIA,
                                extra=["-s", "echo", "-m", "1"])  # fmt: skip
        result.check()  # sipp received our BYE and answered it
        (record,) = await answerer.wait_calls(1)
        assert record.reason is EndReason.MEDIA_TIMEOUT
    finally:
        await endpoint.stop()
