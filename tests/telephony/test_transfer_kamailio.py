"""Blind transfer through Kamailio: REFER and NOTIFY follow the recorded route set,
and the transferee's new call goes out through the proxy with digest auth (407).
Ports: kamailio 15395, trunk endpoint 15314 (+ test_transfer's 15311/15312)."""

from __future__ import annotations

import asyncio

import pytest

from telephony.interface import EndReason
from telephony.sip_endpoint import SipConfig, SipEndpoint, TrunkConfig
from tests.telephony.conftest import Answerer
from tests.telephony.peers import Kamailio
from tests.telephony.test_transfer import (
    B_PORT,
    C_PORT,
    C_URI,
    RTP,
    Transferee,
    answered,
)

KAMAILIO_PORT, TRUNK_PORT = 15395, 15314
USER, PASSWORD = "agent", "s3cret-pass"  # tests/telephony/kamailio/db/subscriber


@pytest.fixture
async def through_proxy(tmp_path):
    """`trunk`: registered at kamailio, transferee handler attached; `b`, `c` direct."""
    async with Kamailio(tmp_path / "kamailio", KAMAILIO_PORT):
        answers = {"trunk": Answerer(), "b": Answerer(), "c": Answerer()}
        handlers = {"trunk": Transferee(), "b": Transferee()}
        trunk = TrunkConfig(("127.0.0.1", KAMAILIO_PORT), USER, PASSWORD, expires_s=60)
        configs = {
            "trunk": SipConfig(bind=("127.0.0.1", TRUNK_PORT), rtp_ports=RTP["a"], user=USER,
                               trunk=trunk),
            "b": SipConfig(bind=("127.0.0.1", B_PORT), rtp_ports=RTP["b"], user="b"),
            "c": SipConfig(bind=("127.0.0.1", C_PORT), rtp_ports=RTP["c"], user="c"),
        }  # fmt: skip
        endpoints: dict[str, SipEndpoint] = {}
        try:
            for name, config in configs.items():
                endpoints[name] = SipEndpoint(config)
                await endpoints[name].start(answers[name], on_transfer=handlers.get(name))
            yield endpoints, answers, handlers
        finally:
            for endpoint in endpoints.values():
                await endpoint.stop()


async def test_proxied_call_transferred_to_us_goes_out_through_the_proxy(through_proxy):
    endpoints, answers, handlers = through_proxy
    # b dials the trunk user's address of record at the proxy
    b_call = await endpoints["b"].place_call(
        f"sip:{USER}@127.0.0.1:{KAMAILIO_PORT}", ring_timeout_s=5
    )
    trunk_record = await answered(answers["trunk"])
    assert trunk_record.call is not None and trunk_record.call.route_set  # via the proxy
    assert await b_call.transfer(C_URI, timeout_s=10) is True
    assert await asyncio.wait_for(trunk_record.call.wait_ended(), 5) is EndReason.TRANSFERRED
    await asyncio.wait_for(handlers["trunk"].done.wait(), 5)
    (new_call,) = handlers["trunk"].new_calls
    c_record = await answered(answers["c"])
    assert c_record.call is not None
    # the new call came through kamailio (it answered the proxy's 407 to get there)
    assert any(str(KAMAILIO_PORT) in route for route in c_record.call.route_set)
    await new_call.hangup()


async def test_we_transfer_a_proxied_call(through_proxy):
    endpoints, answers, handlers = through_proxy
    call = await endpoints["trunk"].place_call(f"sip:b@127.0.0.1:{B_PORT}", ring_timeout_s=5)
    b_record = await answered(answers["b"])
    assert b_record.call is not None and b_record.call.route_set
    assert await call.transfer(C_URI, timeout_s=10) is True  # REFER, NOTIFYs via the proxy
    assert call.end_reason is EndReason.TRANSFERRED
    assert await asyncio.wait_for(b_record.call.wait_ended(), 5) is EndReason.TRANSFERRED
    await asyncio.wait_for(handlers["b"].done.wait(), 5)
    (new_call,) = handlers["b"].new_calls
    c_record = await answered(answers["c"])
    assert c_record.call is not None and c_record.call.info.caller == "sip:b@127.0.0.1"
    await new_call.hangup()
