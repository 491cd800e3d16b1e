"""The endpoint against raw datagrams: malformed input, unknown dialogs, a
compact-header INVITE, and it keeps serving throughout."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tests.telephony.conftest import SIP_PORT
from tests.telephony.test_sip_parsing import BASIC, invite


@pytest.fixture
def client():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 15450))
    sock.settimeout(2.0)
    yield sock
    sock.close()


async def exchange(sock: socket.socket, data: bytes, expect_reply: bool = True) -> bytes | None:
    sock.sendto(data, ("127.0.0.1", SIP_PORT))
    loop = asyncio.get_running_loop()
    try:
        reply, _ = await loop.run_in_executor(None, sock.recvfrom, 65535)
    except TimeoutError:
        return None
    return reply


def request(method: str, extra: str = "", branch: str = "z9hG4bKr1") -> bytes:
    headers = BASIC.replace("INVITE", method).replace("z9hG4bK1", branch)
    return (
        f"{method} sip:echo@127.0.0.1 SIP/2.0\r\n{headers}{extra}Content-Length: 0\r\n\r\n".encode()
    )


async def test_options_bye_unknown_and_unsupported_methods(endpoint, client) -> None:
    reply = await exchange(client, request("OPTIONS"))
    assert reply.startswith(b"SIP/2.0 200") and b"Allow: INVITE" in reply
    reply = await exchange(client, request("BYE", extra="", branch="z9hG4bKb1"))
    assert reply.startswith(b"SIP/2.0 481")
    reply = await exchange(client, request("SUBSCRIBE", branch="z9hG4bKs1"))
    assert reply.startswith(b"SIP/2.0 405")
    reply = await exchange(client, request("CANCEL", branch="z9hG4bKc1"))
    assert reply.startswith(b"SIP/2.0 481")


async def test_malformed_gets_400_or_is_dropped_and_service_continues(endpoint, client) -> None:
    bad_cseq = request("OPTIONS").replace(b"CSeq: 1 OPTIONS", b"CSeq: x")
    reply = await exchange(client, bad_cseq)
    assert reply is not None and reply.startswith(b"SIP/2.0 400")
    client.settimeout(0.5)
    for junk in (b"\x80\x00" * 100, b"SIP/2.0 200 OK\r\n\r\n", b"NOT SIP AT ALL\r\n\r\n"):
        assert await exchange(client, junk) is None  # dropped: nothing names a transaction
    client.settimeout(2.0)
    reply = await exchange(client, request("OPTIONS", branch="z9hG4bKafter"))
    assert reply.startswith(b"SIP/2.0 200")


async def test_compact_header_invite_is_answered(endpoint, answerer, client) -> None:
    raw = invite(
        "v: SIP/2.0/UDP 127.0.0.1:15450;branch=z9hG4bKci;rport\r\n"
        "f: <sip:a@127.0.0.1>;tag=9\r\nt:<sip:echo@127.0.0.1>\r\ni: compact-1\r\n"
        "cseq:1 INVITE\r\nm: <sip:a@127.0.0.1:15450>\r\nSupported:\r\nc: application/sdp\r\n"
    )
    replies = []
    client.sendto(raw, ("127.0.0.1", SIP_PORT))
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(5):
        while not replies or not replies[-1].startswith(b"SIP/2.0 200"):
            data, _ = await loop.run_in_executor(None, client.recvfrom, 65535)
            replies.append(data)
    assert [r.split(b" ")[1] for r in replies[:3]] == [b"100", b"180", b"200"]
    ok = replies[-1].decode()
    to_tag = ok.split("To: ")[1].split("\r\n")[0].split("tag=")[1]
    assert "m=audio" in ok and "a=rtpmap:8 PCMA/8000" in ok
    ack = raw.decode().split("\r\n\r\n")[0].replace("INVITE sip", "ACK sip", 1)
    ack = ack.replace("cseq:1 INVITE", "cseq:1 ACK")
    ack = ack.replace("t:<sip:echo@127.0.0.1>", f"t:<sip:echo@127.0.0.1>;tag={to_tag}")
    client.sendto((ack.split("Content-Length")[0] + "Content-Length: 0\r\n\r\n").encode(),
                  ("127.0.0.1", SIP_PORT))  # fmt: skip
    bye = request("BYE", branch="z9hG4bKbye").decode()
    bye = (
        bye.replace("Call-ID: x1", "Call-ID: compact-1")
        .replace("To: <sip:echo@127.0.0.1>", f"To: <sip:echo@127.0.0.1>;tag={to_tag}")
        .replace("From: <sip:a@127.0.0.1>;tag=1", "From: <sip:a@127.0.0.1>;tag=9")
    )
    reply = await exchange(client, bye.replace("CSeq: 1 BYE", "CSeq: 2 BYE").encode())
    for _ in range(10):  # skip retransmitted 200s to the INVITE
        if reply is None or b"CSeq: 2 BYE" in reply:
            break
        reply = await exchange(client, b"\r\n\r\n")
    assert reply is not None and reply.startswith(b"SIP/2.0 200")
    (record,) = await answerer.wait_calls(1)
    assert record.call.info.call_id == "compact-1"


async def test_rejected_call_gets_the_code_and_retransmissions_do_not_ring_again(
    endpoint, answerer, client
) -> None:
    answerer.reject_code = 486
    raw = invite(
        BASIC.replace("127.0.0.1:5070", "127.0.0.1:15450") + "Content-Type: application/sdp\r\n"
    )
    replies = []
    loop = asyncio.get_running_loop()
    for _ in range(2):  # the second INVITE is a retransmission (same branch)
        client.sendto(raw, ("127.0.0.1", SIP_PORT))
        async with asyncio.timeout(5):
            while True:
                data, _ = await loop.run_in_executor(None, client.recvfrom, 65535)
                replies.append(data)
                if data.startswith(b"SIP/2.0 486"):
                    break
    assert len(answerer.records) == 1  # one call, not two
    assert sum(r.startswith(b"SIP/2.0 486") for r in replies) == 2
