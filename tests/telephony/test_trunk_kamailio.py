"""Trunk mode through Kamailio as registrar/proxy with digest auth (401 and 407)."""

from __future__ import annotations

import asyncio

import pytest

from telephony.interface import EndReason
from telephony.sip_endpoint import SipConfig, SipEndpoint, SipError, TrunkConfig
from tests.telephony.audio_checks import dominant_frequency, tone, voiced
from tests.telephony.conftest import RTP_PORTS, Answerer
from tests.telephony.peers import Kamailio, render, run_sipp, write_rtp_pcap

KAMAILIO_PORT = 15600
AGENT_PORT = 15062
SIPP_PORT = 15640
SIPP_MEDIA = 15660
USER, PASSWORD = "agent", "s3cret-pass"  # tests/telephony/kamailio/db/subscriber


def trunk_config(password: str = PASSWORD) -> SipConfig:
    trunk = TrunkConfig(("127.0.0.1", KAMAILIO_PORT), USER, password, expires_s=60)
    return SipConfig(bind=("127.0.0.1", AGENT_PORT), rtp_ports=RTP_PORTS, user=USER, trunk=trunk)


@pytest.fixture
async def kamailio(tmp_path):
    async with Kamailio(tmp_path / "kamailio", KAMAILIO_PORT) as proxy:
        yield proxy


async def test_registers_with_digest_and_receives_calls_through_the_proxy(kamailio, tmp_path):
    answerer = Answerer()
    endpoint = SipEndpoint(trunk_config())
    await endpoint.start(answerer)  # REGISTER -> 401 -> REGISTER with credentials -> 200
    try:
        assert endpoint.registered.is_set()
        pcap = write_rtp_pcap(tmp_path / "a.pcap", tone(1000, 2.0, -12), 0)
        scenario = render("uac_tone.xml", tmp_path / "uac.xml", pt=0, codec="PCMU", pcap=pcap,
                          hold_ms=2300)  # fmt: skip
        # sipp dials the agent's address of record at the proxy, not the agent itself
        result = await run_sipp(scenario, f"127.0.0.1:{KAMAILIO_PORT}", port=SIPP_PORT,
                                media_port=SIPP_MEDIA, extra=["-s", USER, "-m", "1"])  # fmt: skip
        result.check()
        (record,) = await answerer.wait_calls(1)
        assert record.reason is EndReason.REMOTE_HANGUP
        assert "Record-Route" in record.call.info.headers or record.call.route_set
        heard = voiced(record.pcm())
        assert dominant_frequency(heard) == pytest.approx(1000, abs=10)
        assert len(heard) >= 1.5 * 8000
    finally:
        await endpoint.stop()
    assert not endpoint.registered.is_set()  # unregistered on stop


async def test_outbound_call_answers_407_and_hangs_up_through_the_proxy(kamailio, tmp_path):
    endpoint = SipEndpoint(trunk_config())
    await endpoint.start(Answerer())
    uas = asyncio.create_task(
        run_sipp(_uas(tmp_path), "",
                 port=SIPP_PORT, media_port=SIPP_MEDIA, extra=["-m", "1"], timeout_s=20)
    )  # fmt: skip
    try:
        await asyncio.sleep(0.5)
        call = await endpoint.place_call(f"sip:uas@127.0.0.1:{SIPP_PORT}", ring_timeout_s=5)
        await call.write(tone(600, 0.5).tobytes())
        await asyncio.wait_for(call.drain(), 3)
        await call.hangup()
        assert call.end_reason is EndReason.LOCAL_HANGUP
        result = await uas
        result.check()  # sipp saw our ACK and BYE in its dialog, relayed by kamailio
        # it came through the proxy, which only relays after a 407 is answered right
        assert "Via: SIP/2.0/UDP 127.0.0.1:15600" in result.messages
        assert "Proxy-Authorization" not in result.messages  # the proxy consumed it
    finally:
        uas.cancel()
        await endpoint.stop()


async def test_wrong_password_is_a_clear_error(kamailio):
    endpoint = SipEndpoint(trunk_config(password="wrong"))
    with pytest.raises(SipError, match="refused agent: 401"):
        await endpoint.start(Answerer())
    await endpoint.stop()


def _uas(tmp_path):
    return render("uas_answer.xml", tmp_path / "uas.xml")
