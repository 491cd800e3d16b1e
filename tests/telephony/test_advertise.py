"""SipConfig.advertise: the host peers are told to use (Contact, Via, SDP), never
0.0.0.0. Loopback only: 127.0.0.9 stands in for a public NAT address.
Ports: 15313, 15380-15389, 15391."""

from __future__ import annotations

import asyncio

import pytest

from telephony.sdp import parse_sdp
from telephony.sip_endpoint import SipConfig, SipEndpoint, route_address
from tests.telephony.conftest import Answerer
from tests.telephony.raw_sip import RawSipPeer, answer_call, call_endpoint

PORT, RAW_PORT, RAW_MEDIA = 15313, 15391, 15393
RTP_PORTS = (15380, 15390)


@pytest.fixture
async def advertised():
    answerer = Answerer()
    endpoint = SipEndpoint(
        SipConfig(bind=("127.0.0.1", PORT), rtp_ports=RTP_PORTS, advertise="127.0.0.9")
    )
    await endpoint.start(answerer)
    yield endpoint, answerer
    await endpoint.stop()


async def test_outgoing_invite_and_in_dialog_requests_carry_the_advertised_host(
    advertised,
) -> None:
    endpoint, _ = advertised
    async with RawSipPeer(RAW_PORT) as raw:
        placing = asyncio.create_task(endpoint.place_call(raw.uri, ring_timeout_s=5))
        dialog, invite = await answer_call(raw, RAW_MEDIA)
        call = await placing
        assert f"SIP/2.0/UDP 127.0.0.9:{PORT};" in (invite.get("Via") or "")
        assert invite.get("Contact") == f"<sip:trunkline@127.0.0.9:{PORT}>"
        offer = parse_sdp(invite.body)
        assert offer.address == "127.0.0.9"
        assert offer.port == call.session.local[1]  # the port is the real one
        hangup = asyncio.create_task(call.hangup())
        bye, source = await raw.recv(method="BYE")
        raw.reply(bye, source, 200)
        await asyncio.wait_for(hangup, 5)
        assert f"127.0.0.9:{PORT}" in (bye.get("Via") or "")
        assert dialog.call_id == bye.call_id


async def test_answer_to_an_incoming_call_carries_the_advertised_host(advertised) -> None:
    _, answerer = advertised
    async with RawSipPeer(RAW_PORT) as raw:
        dialog = await call_endpoint(raw, ("127.0.0.1", PORT), RAW_MEDIA)
        assert dialog.answer is not None
        assert dialog.target == f"sip:trunkline@127.0.0.9:{PORT}"  # from the 200's Contact
        assert parse_sdp(dialog.answer.body).address == "127.0.0.9"
        assert (await dialog.send("OPTIONS")).status == 200
        assert (await dialog.send("BYE")).status == 200
        (record,) = await answerer.wait_calls(1)
        assert record.call is not None


def test_wildcard_bind_advertises_the_interface_that_routes_to_the_peer() -> None:
    config = SipConfig(bind=("0.0.0.0", 5060))
    endpoint = SipEndpoint(config)  # not started: no socket is bound
    assert route_address("127.0.0.1") == "127.0.0.1"
    assert endpoint.host_for(("127.0.0.1", 5070)) == "127.0.0.1"
    assert config.media_bind_host == "0.0.0.0"  # RTP listens where SIP does
    pinned = SipEndpoint(SipConfig(bind=("0.0.0.0", 5060), advertise="127.0.0.9"))
    assert pinned.host_for(("127.0.0.1", 5070)) == "127.0.0.9"
    plain = SipEndpoint(SipConfig(bind=("127.0.0.1", 5060)))
    assert plain.host_for(("127.0.0.1", 5070)) == "127.0.0.1"
    assert plain.config.media_bind_host == "127.0.0.1"
