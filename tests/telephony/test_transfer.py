"""Blind transfer (SIP REFER, RFC 3515): A calls B, B hands A on to C. Our endpoint
as transferor and as transferee, against itself, baresip and a scripted peer that
sends what real peers should not; malformed REFER/NOTIFY get 4xx and change nothing.
Ports: 15310-15399 and 15540-15559 (baresip)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest

from telephony.interface import Call, CallFailed, EndReason, TransferOffer
from telephony.sip_endpoint import SipConfig, SipEndpoint
from telephony.transfer import check_target, parse_refer_to, parse_sipfrag
from telephony.websocket import WebSocketEndpoint
from tests.telephony.audio_checks import dominant_frequency, tone, voiced
from tests.telephony.conftest import Answerer, CallRecord
from tests.telephony.peers import baresip_config, require, run_baresip
from tests.telephony.raw_sip import RawSipPeer, answer_call, call_endpoint

A_PORT, B_PORT, C_PORT = 15310, 15311, 15312
RTP = {"a": (15320, 15340), "b": (15340, 15360), "c": (15360, 15380)}
RAW_PORT, RAW_MEDIA = 15390, 15392  # nobody listens on RAW_MEDIA: signalling only
C_URI = f"sip:c@127.0.0.1:{C_PORT}"
B_TONE, C_TONE, A_TONE = 500.0, 900.0, 700.0
BARESIP_PORT, BARESIP_CONS = 15540, 15546
BARESIP_RTP = (15550, 15559)
WS_PORT = 15398


@dataclass
class Transferee:
    """A's application: what it does when the far end transfers it."""

    decision: str = "accept"  # accept | decline | ignore
    ring_timeout_s: float = 5.0
    offers: list[TransferOffer] = field(default_factory=list)
    new_calls: list[Call] = field(default_factory=list)
    failures: list[CallFailed] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, offer: TransferOffer) -> None:
        self.offers.append(offer)
        try:
            if self.decision == "accept":
                try:
                    self.new_calls.append(await offer.accept(ring_timeout_s=self.ring_timeout_s))
                except CallFailed as exc:
                    self.failures.append(exc)
            elif self.decision == "decline":
                await offer.decline()
        finally:
            self.done.set()


@pytest.fixture
async def trio():
    """Endpoints a (transferee), b (transferor) and c (target) on loopback."""
    ns = SimpleNamespace(
        transferee=Transferee(),
        answer={"a": Answerer(), "b": Answerer(reply_tone_hz=B_TONE),
                "c": Answerer(reply_tone_hz=C_TONE)},
    )  # fmt: skip
    ports = {"a": A_PORT, "b": B_PORT, "c": C_PORT}
    started = []
    try:
        for name, port in ports.items():
            endpoint = SipEndpoint(SipConfig(bind=("127.0.0.1", port), rtp_ports=RTP[name],
                                             user=name))  # fmt: skip
            on_transfer = ns.transferee if name == "a" else None
            await endpoint.start(ns.answer[name], on_transfer=on_transfer)
            started.append(endpoint)
            setattr(ns, name, endpoint)
        yield ns
    finally:
        for endpoint in started:
            await endpoint.stop()


async def answered(answerer: Answerer, count: int = 1, timeout_s: float = 10.0) -> CallRecord:
    """The count-th call the answerer took, once answered (or failed)."""
    async with asyncio.timeout(timeout_s):
        while True:
            if len(answerer.records) >= count:
                record = answerer.records[count - 1]
                if record.call is not None or record.done.is_set():
                    return record
            await asyncio.sleep(0.05)


async def listen(call: Call, seconds: float) -> np.ndarray:
    frames: list[bytes] = []

    async def collect() -> None:
        async for frame in call.audio_in():
            frames.append(frame)

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(collect(), seconds)
    return np.frombuffer(b"".join(frames), "<i2")


async def a_calls_b(trio) -> tuple[Call, Call]:
    a_call = await trio.a.place_call(f"sip:b@127.0.0.1:{B_PORT}", ring_timeout_s=5)
    b_record = await answered(trio.answer["b"])
    assert b_record.call is not None
    return a_call, b_record.call


# ---- our endpoints on every side ----


async def test_transfer_hands_the_caller_to_the_target(trio) -> None:
    a_call, b_call = await a_calls_b(trio)
    assert await b_call.transfer(C_URI, timeout_s=10) is True
    assert b_call.end_reason is EndReason.TRANSFERRED
    assert await asyncio.wait_for(a_call.wait_ended(), 5) is EndReason.TRANSFERRED
    (b_record,) = await trio.answer["b"].wait_calls(1)
    assert b_record.reason is EndReason.TRANSFERRED  # what B's application sees
    (offer,) = trio.transferee.offers
    assert offer.target == C_URI
    assert offer.referred_by == f"sip:b@127.0.0.1:{B_PORT}"
    await asyncio.wait_for(trio.transferee.done.wait(), 5)
    (new_call,) = trio.transferee.new_calls
    assert new_call.info.callee == C_URI
    c_record = await answered(trio.answer["c"])
    assert c_record.call is not None and c_record.call.info.caller == "sip:a@127.0.0.1"
    # A and C now talk: each hears the other's tone
    await new_call.write(tone(A_TONE, 1.5).tobytes())
    heard = voiced(await listen(new_call, 1.5))
    assert len(heard) >= 8000 and dominant_frequency(heard) == pytest.approx(C_TONE, abs=10)
    await asyncio.wait_for(new_call.drain(), 5)
    await asyncio.sleep(0.2)
    theirs = voiced(c_record.pcm())
    assert len(theirs) >= 8000 and dominant_frequency(theirs) == pytest.approx(A_TONE, abs=10)
    await new_call.hangup()
    await asyncio.wait_for(c_record.done.wait(), 5)
    assert c_record.reason is EndReason.REMOTE_HANGUP


async def test_failed_transfer_leaves_the_call_as_it_was(trio) -> None:
    trio.answer["c"].reject_code = 486
    a_call, b_call = await a_calls_b(trio)
    assert await b_call.transfer(C_URI, timeout_s=10) is False
    await asyncio.wait_for(trio.transferee.done.wait(), 5)
    (failure,) = trio.transferee.failures
    assert failure.reason is EndReason.BUSY
    assert b_call.end_reason is None and a_call.end_reason is None
    heard = voiced(await listen(a_call, 1.5))  # B's audio still reaches A
    assert len(heard) >= 8000 and dominant_frequency(heard) == pytest.approx(B_TONE, abs=10)
    await a_call.hangup()
    (b_record,) = await trio.answer["b"].wait_calls(1)
    assert b_record.reason is EndReason.REMOTE_HANGUP


@pytest.mark.parametrize("decision", ["decline", "no handler"])
async def test_declined_transfer_keeps_the_call(trio, decision: str) -> None:
    if decision == "no handler":
        trio.a.on_transfer = None  # REFER refused outright (603)
    else:
        trio.transferee.decision = "decline"  # accepted, then NOTIFY 603
    a_call, b_call = await a_calls_b(trio)
    assert await b_call.transfer(C_URI, timeout_s=10) is False
    assert len(trio.answer["c"].records) == 0  # nobody was called
    assert b_call.end_reason is None and a_call.end_reason is None
    assert len(trio.transferee.offers) == (1 if decision == "decline" else 0)
    await b_call.hangup()
    assert await asyncio.wait_for(a_call.wait_ended(), 5) is EndReason.REMOTE_HANGUP


async def test_transfer_times_out_and_a_late_report_is_harmless(trio) -> None:
    trio.answer["c"].answer_delay_s = 8.0  # C rings longer than anyone waits
    trio.transferee.ring_timeout_s = 3.0
    a_call, b_call = await a_calls_b(trio)
    assert await b_call.transfer(C_URI, timeout_s=1.0) is False
    assert b_call.end_reason is None
    await asyncio.wait_for(trio.transferee.done.wait(), 10)  # A gave up on C: NOTIFY 408 late
    (failure,) = trio.transferee.failures
    assert failure.reason is EndReason.NO_ANSWER
    assert b_call.end_reason is None and a_call.end_reason is None
    heard = voiced(await listen(a_call, 1.0))
    assert dominant_frequency(heard) == pytest.approx(B_TONE, abs=10)


async def test_bad_transfer_targets_are_refused_before_any_signalling(trio) -> None:
    a_call, b_call = await a_calls_b(trio)
    for bad in ("tel:+15551234", "c@127.0.0.1", "sip:c@127.0.0.1>\r\nX-Evil: 1", "sip:a b@h"):
        with pytest.raises(ValueError):
            await b_call.transfer(bad)
    assert b_call.end_reason is None and a_call.end_reason is None
    assert not trio.transferee.offers


# ---- baresip on one side ----


def _source_wav(tmp_path):
    path = tmp_path / "src.wav"
    pcm = tone(800, 3.0, -12).astype("<i2").tobytes()
    cmd = [require("sox"), "-t", "raw", "-r", "8000", "-e", "signed", "-b", "16", "-c", "1", "-"]
    subprocess.run([*cmd, str(path)], input=pcm, check=True, capture_output=True)
    return path


async def test_baresip_as_transferee_calls_the_target(trio, tmp_path) -> None:
    folder = baresip_config(tmp_path / "bs", sip_port=BARESIP_PORT, rtp_range=BARESIP_RTP,
                            source_wav=_source_wav(tmp_path), auto_answer=True)  # fmt: skip
    peer = asyncio.create_task(run_baresip(folder, command=None, quit_after_s=8))
    await asyncio.sleep(1.0)  # baresip starts listening
    call = await trio.b.place_call(f"sip:baresip@127.0.0.1:{BARESIP_PORT}", ring_timeout_s=5)
    assert await call.transfer(C_URI, timeout_s=8) is True
    assert call.end_reason is EndReason.TRANSFERRED
    c_record = await answered(trio.answer["c"])
    assert c_record.call is not None and "baresip" in c_record.call.info.caller
    out = await peer
    assert f"Call established: {C_URI}" in out, out[-3000:]
    heard = voiced(c_record.pcm())  # baresip's file plays to C
    assert dominant_frequency(heard) == pytest.approx(800, abs=10)


def _add_console(folder) -> None:
    # a UDP console to drive baresip mid-call
    with open(folder / "config", "a") as config:
        config.write(f"module cons.so\ncons_listen 127.0.0.1:{BARESIP_CONS}\n")


async def test_baresip_transfers_its_call_to_us(trio, tmp_path) -> None:
    folder = baresip_config(tmp_path / "bs", sip_port=BARESIP_PORT, rtp_range=BARESIP_RTP,
                            source_wav=_source_wav(tmp_path))  # fmt: skip
    _add_console(folder)
    peer = asyncio.create_task(
        run_baresip(folder, command=f"/dial sip:a@127.0.0.1:{A_PORT}", quit_after_s=8)
    )
    a_record = await answered(trio.answer["a"])
    assert a_record.call is not None
    await asyncio.sleep(1.0)  # the call is up on baresip's side too
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as console:
        console.sendto(f"/transfer {C_URI}\n".encode(), ("127.0.0.1", BARESIP_CONS))
    await asyncio.wait_for(trio.transferee.done.wait(), 10)
    (offer,) = trio.transferee.offers
    assert offer.target == C_URI
    (new_call,) = trio.transferee.new_calls
    assert await asyncio.wait_for(a_record.call.wait_ended(), 5) is EndReason.TRANSFERRED
    c_record = await answered(trio.answer["c"])
    assert c_record.call is not None and c_record.call.info.caller == "sip:a@127.0.0.1"
    heard = voiced(await listen(new_call, 1.0))
    assert dominant_frequency(heard) == pytest.approx(C_TONE, abs=10)
    await new_call.hangup()
    out = await peer
    assert "terminated" in out, out[-3000:]


# ---- a scripted peer: odd and malformed messages ----


async def test_transferor_copes_with_bad_notify_and_reports_failure(trio) -> None:
    async with RawSipPeer(RAW_PORT) as raw:
        placing = asyncio.create_task(trio.b.place_call(raw.uri, ring_timeout_s=5))
        dialog, _ = await answer_call(raw, RAW_MEDIA)
        call = await placing
        transfer = asyncio.create_task(call.transfer(C_URI, timeout_s=10))
        refer, source = await raw.recv(method="REFER")
        assert refer.get("Refer-To") == f"<{C_URI}>"
        assert refer.get("Referred-By") == "<sip:b@127.0.0.1>"
        assert refer.get("Contact")
        raw.reply(refer, source, 202, "Accepted")
        event = f"refer;id={refer.cseq()[0]}"
        sipfrag = (("Content-Type", "message/sipfrag"),)

        def notify_headers(ev: str = event, state: str = "active") -> tuple:
            return (("Event", ev), ("Subscription-State", state), *sipfrag)

        bad = [
            (notify_headers(ev="presence"), b"SIP/2.0 100 Trying\r\n", 489),
            (notify_headers(), b"not a status line\r\n", 400),
            (notify_headers(), b"\xff\xfe\x00", 400),
            (notify_headers(ev="refer;id=9999"), b"SIP/2.0 200 OK\r\n", 481),
            ((("Event", event), ("Content-Type", "text/plain")), b"SIP/2.0 200 OK\r\n", 400),
        ]
        for headers, body, code in bad:
            response = await dialog.send("NOTIFY", headers, body)
            assert response.status == code, (headers, body, response.status)
        assert not transfer.done()  # none of that decided anything
        ok = await dialog.send(
            "NOTIFY", notify_headers(state="terminated;reason=noresource"),
            b"SIP/2.0 503 Service Unavailable\r\n",
        )  # fmt: skip
        assert ok.status == 200
        assert await asyncio.wait_for(transfer, 5) is False
        assert call.end_reason is None
        bye = await dialog.send("BYE")
        assert bye.status == 200
        assert await asyncio.wait_for(call.wait_ended(), 5) is EndReason.REMOTE_HANGUP


@pytest.mark.parametrize("code", [405, 501, 603])
async def test_refused_refer_keeps_the_call(trio, code: int) -> None:
    async with RawSipPeer(RAW_PORT) as raw:
        placing = asyncio.create_task(trio.b.place_call(raw.uri, ring_timeout_s=5))
        dialog, _ = await answer_call(raw, RAW_MEDIA)
        call = await placing
        transfer = asyncio.create_task(call.transfer(C_URI, timeout_s=10))
        refer, source = await raw.recv(method="REFER")
        raw.reply(refer, source, code, "No")
        assert await asyncio.wait_for(transfer, 5) is False
        assert call.end_reason is None
        assert (await dialog.send("BYE")).status == 200


@pytest.mark.parametrize("notify_after_bye", [True, False])
async def test_transferee_bye_before_the_final_notify(trio, notify_after_bye: bool) -> None:
    async with RawSipPeer(RAW_PORT) as raw:
        placing = asyncio.create_task(trio.b.place_call(raw.uri, ring_timeout_s=5))
        dialog, _ = await answer_call(raw, RAW_MEDIA)
        call = await placing
        transfer = asyncio.create_task(call.transfer(C_URI, timeout_s=15))
        refer, source = await raw.recv(method="REFER")
        raw.reply(refer, source, 202, "Accepted")
        assert (await dialog.send("BYE")).status == 200  # overtakes the final NOTIFY
        if notify_after_bye:  # the subscription outlives the call: still answered
            response = await dialog.send(
                "NOTIFY",
                (("Event", "refer"), ("Subscription-State", "terminated"),
                 ("Content-Type", "message/sipfrag")),
                b"SIP/2.0 200 OK\r\n",
            )  # fmt: skip
            assert response.status == 200
        assert await asyncio.wait_for(transfer, 10) is notify_after_bye
        expected = EndReason.TRANSFERRED if notify_after_bye else EndReason.REMOTE_HANGUP
        assert call.end_reason is expected
        assert await raw.nothing_more("BYE", wait_s=0.5)  # no BYE for a dialog already gone


async def test_malformed_refer_gets_4xx_and_the_call_goes_on(trio) -> None:
    async with RawSipPeer(RAW_PORT) as raw:
        dialog = await call_endpoint(raw, ("127.0.0.1", A_PORT), RAW_MEDIA)
        a_record = await answered(trio.answer["a"])
        cases = [
            ((), 400),  # no Refer-To
            ((("Refer-To", f"<{C_URI}>"), ("Refer-To", "<sip:d@127.0.0.1>")), 400),
            ((("Refer-To", "<tel:+15551234>"),), 416),
            ((("Refer-To", "<mailto:x@example.invalid>"),), 416),
            ((("Refer-To", "<sip:c@127.0.0.1?Replaces=abc%40h%3Bto-tag%3D1>"),), 501),
            ((("Refer-To", "<sip:c@127.0.0.1 evil>"),), 400),
            ((("Refer-To", "sip:c@127.0.0.1>X-Evil: 1"),), 400),
            ((("Refer-To", "<>"),), 400),
            ((("Refer-To", "<sip:>"),), 400),
        ]
        for headers, code in cases:
            response = await dialog.send("REFER", headers)
            assert response.status == code, (headers, response.status, response.reason)
        outside = raw.request(
            "REFER", dialog.target, call_id="no-such-call", from_value=dialog.ours,
            to_value=dialog.theirs, extra=(("Refer-To", f"<{C_URI}>"),),
        )  # fmt: skip
        raw.send(outside, dialog.dest)
        reply, _ = await raw.recv(status=481)
        assert reply.call_id == "no-such-call"
        notify = await dialog.send("NOTIFY", (("Event", "refer"),), b"")
        assert notify.status == 481  # we asked for no transfer
        bad_cseq = dialog.request("REFER", (("Refer-To", f"<{C_URI}>"),))
        bad_cseq.set("CSeq", "x REFER")
        raw.send(bad_cseq, dialog.dest)
        assert (await raw.recv_data()).startswith(b"SIP/2.0 400")
        assert not trio.transferee.offers and not trio.answer["c"].records
        assert a_record.call is not None and a_record.call.end_reason is None
        assert (await dialog.send("OPTIONS")).status == 200
        assert (await dialog.send("BYE")).status == 200
        (record,) = await trio.answer["a"].wait_calls(1)
        assert record.reason is EndReason.REMOTE_HANGUP


async def test_transferee_reports_progress_by_sipfrag_then_hangs_up(trio) -> None:
    async with RawSipPeer(RAW_PORT) as raw:
        dialog = await call_endpoint(raw, ("127.0.0.1", A_PORT), RAW_MEDIA)
        a_record = await answered(trio.answer["a"])
        accepted = await dialog.send(
            "REFER", (("Refer-To", f"<{C_URI}>"), ("Referred-By", f"<{raw.uri}>"))
        )
        assert accepted.status == 202
        refer_cseq = raw.cseq
        reports: dict[int, tuple[int | None, str]] = {}  # by CSeq: retransmissions once
        for _ in range(10):
            notify, source = await raw.recv(method="NOTIFY", timeout_s=10)
            raw.reply(notify, source, 200)
            assert notify.get("Event") == f"refer;id={refer_cseq}"
            assert (notify.get("Content-Type") or "").startswith("message/sipfrag")
            assert notify.get("Contact")
            state = notify.get("Subscription-State") or ""
            reports[notify.cseq()[0]] = (parse_sipfrag(notify.body), state)
            if state.startswith("terminated"):
                break
        first, last = (reports[cseq] for cseq in sorted(reports))
        assert first[0] == 100 and first[1].startswith("active")
        assert last[0] == 200 and last[1].startswith("terminated")
        bye, source = await raw.recv(method="BYE")
        raw.reply(bye, source, 200)
        assert a_record.call is not None
        assert await asyncio.wait_for(a_record.call.wait_ended(), 5) is EndReason.TRANSFERRED
        (offer,) = trio.transferee.offers
        assert offer.referred_by == raw.uri
        c_record = await answered(trio.answer["c"])
        assert c_record.call is not None


async def test_refer_sub_false_means_no_notify(trio) -> None:
    async with RawSipPeer(RAW_PORT) as raw:
        dialog = await call_endpoint(raw, ("127.0.0.1", A_PORT), RAW_MEDIA)
        accepted = await dialog.send("REFER", (("Refer-To", f"<{C_URI}>"), ("Refer-Sub", "false")))
        assert accepted.status == 202 and accepted.get("Refer-Sub") == "false"
        bye, source = await raw.recv(method="BYE", timeout_s=10)  # C answered: A leaves us
        raw.reply(bye, source, 200)
        await asyncio.wait_for(trio.transferee.done.wait(), 5)
        assert len(trio.transferee.new_calls) == 1
        assert await raw.nothing_more("NOTIFY", wait_s=0.5)


def test_refer_to_and_sipfrag_parsing() -> None:
    assert parse_refer_to(['"Desk" <sip:c@127.0.0.1:5070;transport=udp>;x=1']) == (
        "sip:c@127.0.0.1:5070;transport=udp"
    )
    assert parse_refer_to(["sip:c@127.0.0.1"]) == "sip:c@127.0.0.1"
    assert parse_refer_to(["<sip:c@127.0.0.1?X-Note=hello>"]) == "sip:c@127.0.0.1"
    assert check_target(" <sips:c@example.invalid> ") == "sips:c@example.invalid"
    assert parse_sipfrag(b"SIP/2.0 180 Ringing\r\nVia: x\r\n") == 180
    assert parse_sipfrag(b"SIP/2.0 200\r\n") == 200
    assert parse_sipfrag(b"INVITE sip:x SIP/2.0\r\n") is None


async def test_websocket_calls_cannot_be_transferred_and_go_on() -> None:
    answerer = Answerer(reply_tone_hz=B_TONE)
    server = WebSocketEndpoint("127.0.0.1", WS_PORT)
    client = WebSocketEndpoint("127.0.0.1", 0)
    await server.start(answerer)
    try:
        call = await client.place_call(f"ws://127.0.0.1:{WS_PORT}/", ring_timeout_s=5)
        assert await call.transfer(C_URI) is False
        assert call.end_reason is None
        heard = voiced(await listen(call, 1.0))
        assert dominant_frequency(heard) == pytest.approx(B_TONE, abs=10)
        await call.hangup()
    finally:
        await client.stop()
        await server.stop()
