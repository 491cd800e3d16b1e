"""The SIP parser, digest and SDP: what real peers send, and what they must not crash."""

from __future__ import annotations

import hashlib

import pytest

from telephony.digest import DigestError, authorization, parse_challenge
from telephony.sdp import SdpError, build_sdp, parse_sdp
from telephony.sip_endpoint import new_call_id
from telephony.sip_message import SipParseError, parse_message

SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 6000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    "a=rtpmap:9 G722/8000\r\na=sendrecv\r\n"
)


def invite(headers: str, body: str = SDP) -> bytes:
    return (
        f"INVITE sip:echo@127.0.0.1 SIP/2.0\r\n{headers}Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


BASIC = (
    "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1;rport\r\n"
    "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:echo@127.0.0.1>\r\n"
    "Call-ID: x1\r\nCSeq: 1 INVITE\r\nContact: <sip:a@127.0.0.1:5070>\r\n"
)


def test_compact_lowercase_nospace_and_empty_headers() -> None:
    # every one of these made pyVoIP 1.6.8 drop the message (telephony/README.md)
    raw = invite(
        "v: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK2\r\n"
        "f: <sip:a@127.0.0.1>;tag=9\r\nt:<sip:echo@127.0.0.1>\r\ni: abc\r\n"
        "cseq:7 INVITE\r\nm: <sip:a@127.0.0.1:5070>\r\nSupported:\r\nc: application/sdp\r\n"
    )
    message = parse_message(raw)
    assert message.method == "INVITE"
    assert message.call_id == "abc"
    assert message.from_tag == "9"
    assert message.to_tag is None
    assert message.cseq() == (7, "INVITE")
    assert message.get("Supported") == ""
    assert message.branch == "z9hG4bK2"
    assert parse_sdp(message.body).choose() == (8, 101)  # rtpmap for 9 (not in m=) is harmless


def test_folded_and_multi_valued_headers() -> None:
    raw = invite(BASIC + "Record-Route: <sip:p1;lr>, <sip:p2;lr>\r\nRecord-Route: <sip:p3;lr>\r\n"
                 "Subject: a\r\n  folded line\r\n")  # fmt: skip
    message = parse_message(raw)
    assert message.get_all("Record-Route") == ["<sip:p1;lr>", "<sip:p2;lr>", "<sip:p3;lr>"]
    assert message.get("Subject") == "a folded line"


def test_lf_only_line_endings() -> None:
    message = parse_message(invite(BASIC, body="").replace(b"\r\n", b"\n"))
    assert message.call_id == "x1"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\x01garbage",
        b"INVITE sip:x SIP/2.0\r\n\r\n",  # no mandatory headers
        b"HELLO\r\n\r\n",
        invite(BASIC.replace("CSeq: 1 INVITE", "CSeq: one")),
        invite(BASIC)[:-20],  # truncated body
        invite(BASIC.replace("Call-ID: x1", "Call ID x1")),
        b"INVITE sip:x SIP/3.0\r\n" + BASIC.encode() + b"\r\n",
    ],
)
def test_malformed_messages_raise_a_typed_error(raw: bytes) -> None:
    with pytest.raises(SipParseError):
        parse_message(raw)


def test_status_line_with_unknown_code_and_empty_reason() -> None:
    message = parse_message(b"SIP/2.0 599\r\n" + BASIC.replace("INVITE", "INVITE", 1).encode()
                            + b"\r\n")  # fmt: skip
    assert message.status == 599 and message.reason == ""


def test_digest_rfc2617_vector_and_qop() -> None:
    # RFC 2617 section 3.5, qop=auth with a fixed cnonce: recompute independently
    challenge = parse_challenge(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    value = authorization(challenge, method="GET", uri="/dir/index.html", username="Mufasa",
                          password="Circle Of Life")  # fmt: skip
    fields = dict(part.split("=", 1) for part in value.removeprefix("Digest ").split(", "))
    cnonce = fields["cnonce"].strip('"')
    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    ha1 = md5("Mufasa:testrealm@host.com:Circle Of Life")
    ha2 = md5("GET:/dir/index.html")
    expected = md5(f"{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:00000001:{cnonce}:auth:{ha2}")
    assert fields["response"] == f'"{expected}"'
    assert fields["opaque"] == '"5ccc069c403ebaf9f0171e9517f40e41"'


def test_digest_without_qop_and_bad_challenges() -> None:
    challenge = parse_challenge('Digest realm="r", nonce="n"')
    value = authorization(challenge, method="REGISTER", uri="sip:r", username="u", password="p")
    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    assert f'response="{md5(md5("u:r:p") + ":n:" + md5("REGISTER:sip:r"))}"' in value
    with pytest.raises(DigestError):
        parse_challenge('Basic realm="r"')
    with pytest.raises(DigestError):
        parse_challenge('Digest realm="r", nonce="n", algorithm=SHA-512-256')


def test_sdp_hold_directions_and_errors() -> None:
    assert parse_sdp(SDP.replace("a=sendrecv", "a=sendonly").encode()).direction == "sendonly"
    assert parse_sdp(SDP.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0").encode()).direction == (
        "inactive"
    )
    with pytest.raises(SdpError, match="no common codec"):
        parse_sdp(SDP.replace("RTP/AVP 8 0 101", "RTP/AVP 9 101").encode()).choose()
    with pytest.raises(SdpError):
        parse_sdp(b"v=0\r\n")
    ours = parse_sdp(build_sdp("127.0.0.1", 4000, [0, 8]))
    assert (ours.port, ours.choose()) == (4000, (0, 101))


def test_call_ids_are_unique() -> None:
    ids = {new_call_id("127.0.0.1") for _ in range(10000)}
    assert len(ids) == 10000
