"""Our SIP user agent over UDP, asyncio, behind telephony.interface.

pyVoIP's SIP layer (evidence in telephony/README.md) drops valid messages,
always registers, answers CANCEL wrongly and mis-ACKs, so signalling here is
ours: sip_message parses and builds, digest answers challenges, and this
module runs transactions and dialogs. Media is telephony.media.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import socket
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from telephony.clock import MediaClock
from telephony.digest import DigestError, authorization, parse_challenge
from telephony.g711 import PCMA, PCMU
from telephony.interface import (
    CallFailed,
    CallInfo,
    DtmfEvent,
    EndReason,
    IncomingHandler,
    TransferHandler,
)
from telephony.media import MediaError, RtpSession, bind_rtp_socket
from telephony.sdp import ANSWER_DIRECTION, SdpError, build_sdp, parse_sdp
from telephony.sip_message import (
    SipMessage,
    SipParseError,
    canonical_name,
    header_tag,
    header_uri,
    parse_message,
    reason_phrase,
)
from telephony.transfer import (
    SIPFRAG_TYPE,
    ReferWatch,
    TransferError,
    check_target,
    failure_status,
    parse_refer_to,
    parse_sipfrag,
    sipfrag,
)

log = logging.getLogger(__name__)

T1 = 0.5  # RFC 3261 timer values for UDP
T2 = 4.0
TRANSACTION_TIMEOUT = 64 * T1
PEER_LEFT_GRACE_S = 4.0  # a transferee's BYE may overtake its final NOTIFY
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY"
USER_AGENT = "trunkline"
_URI_HOST = re.compile(r"^sips?:(?:[^@]*@)?(\[[^\]]+\]|[^:;>?]+)(?::(\d+))?", re.IGNORECASE)


class SipError(Exception):
    """Signalling failed (registration refused, transport down...)."""


@dataclass(frozen=True)
class TrunkConfig:
    """Register at a registrar/proxy and send outbound calls through it."""

    registrar: tuple[str, int]
    username: str
    password: str
    domain: str | None = None  # defaults to the registrar host
    expires_s: int = 300


@dataclass(frozen=True)
class SipConfig:
    bind: tuple[str, int] = ("127.0.0.1", 5060)
    rtp_ports: tuple[int, int] = (20000, 30000)
    user: str = "trunkline"
    trunk: TrunkConfig | None = None
    media_timeout_s: float = 30.0
    codecs: tuple[int, ...] = (PCMU, PCMA)
    # Host put in Contact, Via and SDP (NAT, or a name peers should use). None: the
    # bind host, or when bound to 0.0.0.0 the address of the interface routing to
    # each peer (never 0.0.0.0, which peers cannot send to).
    advertise: str | None = None

    @property
    def wildcard(self) -> bool:
        return self.bind[0] in ("0.0.0.0", "")

    @property
    def host(self) -> str:
        """The advertised host when no peer is known yet."""
        if self.advertise:
            return self.advertise
        return "127.0.0.1" if self.wildcard else self.bind[0]

    @property
    def media_bind_host(self) -> str:
        # RTP listens where SIP does: all interfaces for 0.0.0.0
        return "0.0.0.0" if self.wildcard else self.bind[0]


def route_address(host: str) -> str | None:
    """Our address on the interface that routes to `host`: connecting a UDP socket
    only picks the route, no packet is sent."""
    try:  # IPv4 only, like the rest of the stack
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((host, 9))
            address = sock.getsockname()[0]
    except OSError:
        return None
    return None if address == "0.0.0.0" else address


def uri_destination(uri: str) -> tuple[str, int]:
    match = _URI_HOST.match(uri.strip().strip("<>"))
    if not match:
        raise ValueError(f"not a SIP URI: {uri!r}")
    return match.group(1).strip("[]"), int(match.group(2) or 5060)


def _token() -> str:
    return secrets.token_hex(8)


def new_call_id(host: str) -> str:
    # random UUIDs: unique across restarts (pyVoIP's counters repeat)
    return f"{uuid.uuid4().hex}@{host}"


class _Transaction:
    """A client transaction: retransmits over UDP until answered."""

    def __init__(self, endpoint: SipEndpoint, request: SipMessage, dest: tuple[str, int]):
        self.request = request
        self.dest = dest
        self.responses: asyncio.Queue[SipMessage | None] = asyncio.Queue()
        self.final = False
        self.provisional = False
        self._endpoint = endpoint
        self._task = asyncio.get_running_loop().create_task(self._retransmit())

    async def _retransmit(self) -> None:
        data = self.request.build()
        interval, elapsed = T1, 0.0
        invite = self.request.method == "INVITE"
        while elapsed < TRANSACTION_TIMEOUT:
            if self.final or (invite and self.provisional):
                return
            self._endpoint._send(data, self.dest)
            await asyncio.sleep(interval)
            elapsed += interval
            interval = min(interval * 2, 32.0 if invite else T2)
        if not self.final and not (invite and self.provisional):
            self.responses.put_nowait(None)  # timeout

    def on_response(self, response: SipMessage) -> None:
        if (response.status or 0) >= 200:
            self.final = True
        else:
            self.provisional = True
        self.responses.put_nowait(response)

    async def final_response(self, wait_s: float = TRANSACTION_TIMEOUT) -> SipMessage:
        async with asyncio.timeout(wait_s):
            while True:
                response = await self.responses.get()
                if response is None:
                    raise TimeoutError(f"no answer to {self.request.method}")
                if (response.status or 0) >= 200:
                    return response

    def close(self) -> None:
        self.final = True
        self._task.cancel()
        self._endpoint._transactions.pop(self.request.branch, None)


class SipCall:
    """An established call: a SIP dialog plus its RTP session."""

    def __init__(
        self,
        endpoint: SipEndpoint,
        info: CallInfo,
        session: RtpSession,
        *,
        local_tag: str,
        local_party: str,
        remote_party: str,
        remote_target: str,
        peer: tuple[str, int],
        route_set: list[str],
        local_cseq: int = 1,
    ) -> None:
        self.info = info
        self.session = session
        self.local_tag = local_tag
        self.local_party = local_party  # our From value in requests we send
        self.remote_party = remote_party  # our To value (with the remote tag)
        self.remote_target = remote_target
        self.peer = peer
        self.route_set = route_set
        self.local_cseq = local_cseq
        self.sdp_version = 1
        self.acked = asyncio.Event()
        self._endpoint = endpoint
        self._end_reason: EndReason | None = None
        self._ended = asyncio.Event()
        self._refer: ReferWatch | None = None  # our transfer of this call, while under way
        self._offer: _TransferOffer | None = None  # the far end's transfer request to us
        self._remote_bye_reason = EndReason.REMOTE_HANGUP  # TRANSFERRED once handed on
        session.on_timeout = self._on_media_timeout

    @property
    def end_reason(self) -> EndReason | None:
        return self._end_reason

    @property
    def audio_out_started_at(self) -> float | None:
        return self.session.audio_out_started_at

    def audio_in(self) -> AsyncIterator[bytes]:
        return self.session.audio_in()

    def dtmf_in(self) -> AsyncIterator[DtmfEvent]:
        return self.session.dtmf_in()

    async def write(self, pcm: bytes) -> None:
        await self.session.write(pcm)

    def flush(self) -> int:
        return self.session.flush()

    async def drain(self) -> None:
        await self.session.drain()

    async def send_dtmf(self, digits: str) -> None:
        await self.session.send_dtmf(digits)

    async def hangup(self) -> None:
        if self._end_reason is not None:
            return
        await self._send_bye(EndReason.LOCAL_HANGUP)

    async def wait_ended(self) -> EndReason:
        await self._ended.wait()
        assert self._end_reason is not None
        return self._end_reason

    async def transfer(self, target_uri: str, *, timeout_s: float = 30.0) -> bool:
        """Blind transfer (RFC 3515): REFER the far end to `target_uri`, then follow
        its NOTIFY reports. True when the target answered: this call then ends as
        TRANSFERRED (our BYE unless the far end sent one). False when the REFER is
        refused, the target fails or nothing final arrives in `timeout_s`: the call
        goes on. ValueError for a target that is not a sip:/sips: URI."""
        target = check_target(target_uri)
        if self._end_reason is not None:
            return False
        if self._refer is not None:
            raise RuntimeError(f"call {self.info.call_id}: a transfer is already under way")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        self.local_cseq += 1
        refer = self.in_dialog_request("REFER")
        refer.add("Refer-To", f"<{target}>")
        refer.add("Referred-By", f"<{header_uri(self.local_party)}>")
        watch = ReferWatch(event_id=str(self.local_cseq))
        key = (self.info.call_id, self.local_tag)
        self._refer = watch
        self._endpoint._refers[key] = watch  # outlives the dialog: NOTIFY may follow a BYE
        transaction = self._endpoint._request(refer, self.peer)
        follower = self._endpoint._spawn(self._follow_refer(transaction, watch))
        try:
            await self._await_outcome(watch, deadline)
            if watch.succeeded:
                if watch.peer_left:
                    self._end(EndReason.TRANSFERRED)
                else:
                    await self._send_bye(EndReason.TRANSFERRED)
                return True
            why = (
                f"REFER answered {watch.refer_status}"
                if watch.refused
                else (f"target answered {watch.final}" if watch.final else "no final report")
            )
            log.info("call %s: transfer to %s failed: %s", self.info.call_id, target, why)
            return False
        finally:
            follower.cancel()
            self._refer = None
            self._endpoint._refers.pop(key, None)
            if watch.peer_left:  # they hung up and the transfer did not complete
                self._end(EndReason.REMOTE_HANGUP)

    async def _follow_refer(self, transaction: _Transaction, watch: ReferWatch) -> None:
        # the REFER's answer feeds the same watch as the NOTIFYs: either may come first
        try:
            response = await transaction.final_response()
            watch.on_refer_answer(response.status or 0)
        except TimeoutError:
            watch.on_refer_answer(408)
        finally:
            transaction.close()

    async def _await_outcome(self, watch: ReferWatch, deadline: float) -> None:
        """Wait for the final sipfrag, our call ending, or the deadline."""
        loop = asyncio.get_running_loop()
        grace_until: float | None = None
        while (
            watch.final is None
            and not watch.refused
            and (self._end_reason is None or watch.peer_left)
        ):
            now = loop.time()
            if watch.peer_left and grace_until is None:
                grace_until = now + PEER_LEFT_GRACE_S
            until = deadline if grace_until is None else min(deadline, grace_until)
            if until <= now:
                return
            watch.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(until - now):
                    await watch.changed.wait()

    def _on_remote_bye(self) -> None:
        watch = self._refer
        if watch is None:
            self._end(self._remote_bye_reason)
            return
        # the transferee leaving may mean success: the final NOTIFY decides the reason
        watch.peer_left = True
        self.session.close()
        self._endpoint._dialogs.pop((self.info.call_id, self.local_tag), None)
        watch.changed.set()

    async def _notify_refer(
        self, event_id: str, code: int, reason: str, *, terminated: bool, wait: bool = True
    ) -> None:
        """Report transfer progress to the transferor (RFC 3515 NOTIFY, sipfrag body)."""
        self.local_cseq += 1
        notify = self.in_dialog_request("NOTIFY")
        notify.add("Event", f"refer;id={event_id}")
        state = "terminated;reason=noresource" if terminated else "active;expires=60"
        notify.add("Subscription-State", state)
        notify.add("Content-Type", SIPFRAG_TYPE)
        notify.body = sipfrag(code, reason)
        transaction = self._endpoint._request(notify, self.peer)

        async def answered() -> None:
            try:
                response = await transaction.final_response(wait_s=4 * T2)
                if (response.status or 0) >= 300:
                    log.info("call %s: NOTIFY answered %s", self.info.call_id, response.status)
            except TimeoutError:
                log.info("call %s: no answer to NOTIFY", self.info.call_id)
            finally:
                transaction.close()

        if wait:
            await answered()
        else:
            self._endpoint._spawn(answered())

    def _on_media_timeout(self) -> None:
        self._endpoint._spawn(self._send_bye(EndReason.MEDIA_TIMEOUT))

    async def _send_bye(self, reason: EndReason) -> None:
        if self._end_reason is not None:
            return
        self._end(reason)  # stop media at once; BYE is best effort from here
        self.local_cseq += 1
        bye = self.in_dialog_request("BYE")
        try:
            await self._endpoint._request(bye, self.peer).final_response(wait_s=4 * T2)
        except TimeoutError:
            log.info("no answer to BYE for %s", self.info.call_id)

    def in_dialog_request(self, method: str) -> SipMessage:
        request = self._endpoint._new_request(
            method,
            self.remote_target,
            from_value=self.local_party,
            to_value=self.remote_party,
            call_id=self.info.call_id,
            cseq=self.local_cseq,
            dest=self.peer,
        )
        for route in self.route_set:
            request.add("Route", route)
        return request

    def _end(self, reason: EndReason) -> None:
        if self._end_reason is not None:
            return
        self._end_reason = reason
        self.session.close()
        self._endpoint._dialogs.pop((self.info.call_id, self.local_tag), None)
        self._ended.set()
        if self._refer is not None:
            self._refer.changed.set()  # a transfer waiting on this call stops waiting


@dataclass
class _PendingInvite:
    """An inbound INVITE not answered yet (the IncomingCall the agent sees)."""

    endpoint: SipEndpoint
    request: SipMessage
    source: tuple[str, int]
    info: CallInfo
    local_tag: str = field(default_factory=_token)
    state: str = "ringing"  # ringing | answered | cancelled | rejected
    call: SipCall | None = None

    async def answer(self) -> SipCall:
        return await self.endpoint._answer(self)

    async def reject(self, code: int = 486, reason: str = "Busy Here") -> None:
        if not 300 <= code <= 699:
            raise ValueError(f"reject needs a 3xx-6xx code, not {code}")
        if self.state != "ringing":
            return
        self.state = "rejected"
        self.endpoint._reply(self.request, self.source, code, reason, to_tag=self.local_tag)


class _TransferOffer:
    """A REFER we accepted (202): the application decides whether to call the
    target; the transferor hears how it went by NOTIFY (telephony.interface)."""

    def __init__(
        self, call: SipCall, target: str, referred_by: str | None, event_id: str, notify: bool
    ) -> None:
        self.call = call
        self.target = target
        self.referred_by = referred_by
        self.state = "offered"  # offered | accepted | declined
        self._event_id = event_id
        self._notify = notify  # False for Refer-Sub: false (RFC 4488)

    async def report(self, code: int, reason: str, *, terminated: bool, wait: bool = True) -> None:
        if self._notify:
            await self.call._notify_refer(
                self._event_id, code, reason, terminated=terminated, wait=wait
            )

    async def accept(self, *, ring_timeout_s: float = 30.0) -> SipCall:
        if self.state != "offered":
            raise CallFailed(EndReason.FAILED, f"transfer already {self.state}")
        self.state = "accepted"
        try:
            new_call = await self.call._endpoint.place_call(
                self.target, ring_timeout_s=ring_timeout_s
            )
        except CallFailed as exc:
            await self.report(*failure_status(exc), terminated=True)
            raise
        except Exception as exc:
            await self.report(500, "Server Internal Error", terminated=True)
            raise CallFailed(EndReason.FAILED, f"transfer to {self.target}: {exc}") from exc
        # the transferor may BYE as soon as it reads the 200: that too is a transfer
        self.call._remote_bye_reason = EndReason.TRANSFERRED
        await self.report(200, "OK", terminated=True)
        await self.call._send_bye(EndReason.TRANSFERRED)
        return new_call

    async def decline(self) -> None:
        if self.state != "offered":
            return
        self.state = "declined"
        await self.report(603, "Declined", terminated=True)


class SipEndpoint:
    """A SIP UA: direct INVITEs by default, optional trunk registration."""

    def __init__(self, config: SipConfig | None = None) -> None:
        self.config = config or SipConfig()
        self.clock = MediaClock()
        self._transport: asyncio.DatagramTransport | None = None
        self._on_incoming: IncomingHandler | None = None
        # decides on transfers the far end asks of us (REFER); None declines them all
        self.on_transfer: TransferHandler | None = None
        self._refers: dict[tuple[str, str], ReferWatch] = {}  # our REFERs awaiting NOTIFY
        self._routes: OrderedDict[str, str] = OrderedDict()  # peer host -> our address
        self._transactions: dict[str, _Transaction] = {}
        self._dialogs: dict[tuple[str, str], SipCall] = {}
        self._pending: dict[str, _PendingInvite] = {}  # INVITE branch -> pending call
        self._responses: OrderedDict[tuple[str, str], tuple[bytes, tuple[str, int]]] = (
            OrderedDict()
        )  # answered server transactions, for retransmitted requests
        self._acks: OrderedDict[str, tuple[bytes, tuple[str, int]]] = OrderedDict()
        self._tasks: set[asyncio.Task] = set()
        self._register_call_id = ""
        self._register_cseq = 0
        self.registered = asyncio.Event()

    @property
    def local_address(self) -> tuple[str, int]:
        assert self._transport is not None, "endpoint not started"
        return self._transport.get_extra_info("sockname")[:2]

    @property
    def contact(self) -> str:
        return self.contact_for(None)

    def host_for(self, peer: tuple[str, int] | None) -> str:
        """The host we advertise to `peer` (SipConfig.advertise)."""
        config = self.config
        if config.advertise or not config.wildcard or peer is None:
            return config.host
        host = self._routes.get(peer[0])
        if host is None:
            host = route_address(peer[0]) or config.host
            self._routes[peer[0]] = host
            while len(self._routes) > 256:
                self._routes.popitem(last=False)
        return host

    def contact_for(self, peer: tuple[str, int] | None) -> str:
        return f"<sip:{self.config.user}@{self.host_for(peer)}:{self.local_address[1]}>"

    # ---- lifecycle ----

    async def start(
        self, on_incoming: IncomingHandler, *, on_transfer: TransferHandler | None = None
    ) -> None:
        self._on_incoming = on_incoming
        if on_transfer is not None:
            self.on_transfer = on_transfer
        loop = asyncio.get_running_loop()
        try:
            self._transport, _ = await loop.create_datagram_endpoint(
                lambda: _SipProtocol(self), local_addr=self.config.bind
            )
        except OSError as exc:
            raise SipError(f"cannot listen for SIP on {self.config.bind}: {exc}") from exc
        trunk = self.config.trunk
        if trunk is not None:
            self._register_call_id = new_call_id(self.config.host)
            expires = await self._register(trunk.expires_s)
            self._spawn(self._keep_registered(expires))

    async def stop(self) -> None:
        await asyncio.gather(*(call.hangup() for call in list(self._dialogs.values())))
        if self.config.trunk is not None and self.registered.is_set():
            with contextlib.suppress(SipError, TimeoutError):
                await self._register(0)
        for task in list(self._tasks):
            task.cancel()
        for transaction in list(self._transactions.values()):
            transaction.close()
        await self.clock.stop()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("SIP task failed", exc_info=task.exception())

    # ---- transport ----

    def _send(self, data: bytes, dest: tuple[str, int]) -> None:
        if self._transport is not None:
            self._transport.sendto(data, dest)

    def _on_datagram(self, data: bytes, source: tuple[str, int]) -> None:
        if not data.strip():
            return  # CRLF keep-alive
        try:
            message = parse_message(data)
        except SipParseError as exc:
            log.info("malformed SIP from %s: %s", source, exc)
            self._reply_malformed(data, source, str(exc))
            return
        try:
            if message.is_request:
                self._on_request(message, source)
            else:
                self._on_response(message)
        except Exception:  # one bad message must never stop the endpoint
            log.exception("failed handling SIP from %s", source)
            if message.is_request and message.method != "ACK":
                self._reply(message, source, 500, "Server Internal Error")

    def _reply_malformed(self, data: bytes, source: tuple[str, int], why: str) -> None:
        """400 when the message still names a transaction we can answer; else drop."""
        text = data.decode("utf-8", "replace").replace("\r\n", "\n")
        first, *lines = text.split("\n\n", 1)[0].split("\n")
        if first.startswith("SIP/") or first.upper().startswith("ACK "):
            return  # never answer responses or ACKs
        keep = {"Via": [], "From": [], "To": [], "Call-ID": [], "CSeq": []}
        for line in lines:
            name, colon, value = line.partition(":")
            if colon and canonical_name(name) in keep:
                keep[canonical_name(name)].append(value.strip())
        if not all(keep.values()):
            return
        reason = "Bad Request - " + re.sub(r"[\r\n]", " ", why)[:80]
        lines_out = [f"SIP/2.0 400 {reason}"]
        lines_out += [f"{name}: {v}" for name, values in keep.items() for v in values]
        lines_out += [f"Server: {USER_AGENT}", "Content-Length: 0"]
        self._send(("\r\n".join(lines_out) + "\r\n\r\n").encode(), source)

    # ---- building messages ----

    def _new_request(
        self,
        method: str,
        uri: str,
        *,
        from_value: str,
        to_value: str,
        call_id: str,
        cseq: int,
        branch: str | None = None,
        dest: tuple[str, int] | None = None,
    ) -> SipMessage:
        host, port = self.host_for(dest), self.local_address[1]
        request = SipMessage(method=method, uri=uri)
        branch = branch or f"z9hG4bK{_token()}"
        request.add("Via", f"SIP/2.0/UDP {host}:{port};branch={branch};rport")
        request.add("Max-Forwards", "70")
        request.add("From", from_value)
        request.add("To", to_value)
        request.add("Call-ID", call_id)
        request.add("CSeq", f"{cseq} {method}")
        if method in ("INVITE", "REGISTER", "OPTIONS", "REFER", "NOTIFY"):
            request.add("Contact", self.contact_for(dest))
        request.add("User-Agent", USER_AGENT)
        return request

    def _response(
        self,
        request: SipMessage,
        source: tuple[str, int],
        code: int,
        reason: str | None = None,
        *,
        to_tag: str | None = None,
        body: bytes = b"",
        extra: tuple[tuple[str, str], ...] = (),
    ) -> SipMessage:
        response = SipMessage(status=code, reason=reason or reason_phrase(code))
        for i, via in enumerate(request.get_all("Via")):
            if i == 0:  # RFC 3581: tell the sender where its request came from
                via = re.sub(r";rport(?=;|$)", f";rport={source[1]}", via)
                if ";received=" not in via:
                    via += f";received={source[0]}"
            response.add("Via", via)
        response.add("From", request.get("From") or "")
        to_value = request.get("To") or ""
        if to_tag and header_tag(to_value) is None and code != 100:
            to_value += f";tag={to_tag}"
        response.add("To", to_value)
        response.add("Call-ID", request.call_id)
        response.add("CSeq", request.get("CSeq") or "")
        if request.method in ("INVITE", "REFER") and 100 < code < 300:
            response.add("Contact", self.contact_for(source))
        if code in (200, 405) and request.method in ("INVITE", "OPTIONS"):
            response.add("Allow", ALLOW)
        if request.method == "OPTIONS":
            response.add("Accept", "application/sdp")
        for name, value in extra:
            response.add(name, value)
        response.add("Server", USER_AGENT)
        if body:
            response.add("Content-Type", "application/sdp")
            response.body = body
        return response

    def _reply(
        self,
        request: SipMessage,
        source: tuple[str, int],
        code: int,
        reason: str | None = None,
        *,
        to_tag: str | None = None,
        body: bytes = b"",
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        response = self._response(request, source, code, reason, to_tag=to_tag, body=body,
                                  extra=extra)  # fmt: skip
        data = response.build()
        self._send(data, source)
        if code >= 200:
            key = (request.branch, request.method or "")
            self._responses[key] = (data, source)
            while len(self._responses) > 2000:
                self._responses.popitem(last=False)

    def _request(self, request: SipMessage, dest: tuple[str, int]) -> _Transaction:
        transaction = _Transaction(self, request, dest)
        self._transactions[request.branch] = transaction
        return transaction

    # ---- incoming requests ----

    def _on_request(self, request: SipMessage, source: tuple[str, int]) -> None:
        method = request.method or ""
        key = (request.branch, method)
        if method != "ACK" and key in self._responses:
            data, dest = self._responses[key]  # a retransmission: same answer again
            self._send(data, dest)
            return
        handler = {
            "INVITE": self._on_invite,
            "ACK": self._on_ack,
            "CANCEL": self._on_cancel,
            "BYE": self._on_bye,
            "OPTIONS": self._on_options,
            "INFO": self._on_info,
            "REFER": self._on_refer,
            "NOTIFY": self._on_notify,
        }.get(method)
        if handler is None:
            self._reply(request, source, 405, "Method Not Allowed")
            return
        handler(request, source)

    def _dialog_of(self, request: SipMessage) -> SipCall | None:
        return self._dialogs.get((request.call_id, request.to_tag or ""))

    def _on_options(self, request: SipMessage, source: tuple[str, int]) -> None:
        self._reply(request, source, 200)

    def _on_invite(self, request: SipMessage, source: tuple[str, int]) -> None:
        if request.to_tag:
            self._on_reinvite(request, source)
            return
        pending = self._pending.get(request.branch)
        if pending is not None:  # retransmitted while ringing
            if pending.state == "ringing":
                self._reply(request, source, 180, to_tag=pending.local_tag)
            return
        if request.body and "sdp" not in (request.get("Content-Type") or "").lower():
            self._reply(request, source, 415, "Unsupported Media Type")
            return
        headers = {name: value for name, value in request.headers}
        info = CallInfo(
            call_id=request.call_id,
            direction="inbound",
            caller=header_uri(request.get("From") or ""),
            callee=header_uri(request.get("To") or ""),
            headers=headers,
        )
        pending = _PendingInvite(self, request, source, info)
        self._pending[request.branch] = pending
        self._reply(request, source, 100, "Trying")
        self._reply(request, source, 180, "Ringing", to_tag=pending.local_tag)
        self._spawn(self._run_incoming(pending))

    async def _run_incoming(self, pending: _PendingInvite) -> None:
        try:
            if self._on_incoming is not None:
                await self._on_incoming(pending)
        finally:
            if pending.state == "ringing":  # the handler neither answered nor rejected
                await pending.reject(480, "Temporarily Unavailable")
            # keep the entry a while so CANCEL and INVITE retransmissions still
            # match it (an answered INVITE retransmitted must not ring again)
            await asyncio.sleep(TRANSACTION_TIMEOUT)
            self._pending.pop(pending.request.branch, None)

    async def _answer(self, pending: _PendingInvite) -> SipCall:
        if pending.state == "cancelled":
            raise CallFailed(EndReason.CANCELLED, "caller hung up before answer")
        if pending.state != "ringing":
            raise CallFailed(EndReason.FAILED, f"call already {pending.state}")
        request, source = pending.request, pending.source
        offer = None
        try:
            if request.body:
                offer = parse_sdp(request.body)
                payload_type, event_pt = offer.choose(self.config.codecs)
            else:  # late offer: we offer in the 200, the ACK answers
                payload_type, event_pt = self.config.codecs[0], 101
        except SdpError as exc:
            pending.state = "rejected"
            self._reply(request, source, 488, "Not Acceptable Here", to_tag=pending.local_tag)
            raise CallFailed(EndReason.FAILED, str(exc)) from exc
        try:
            sock = bind_rtp_socket(self.config.media_bind_host, self.config.rtp_ports)
        except MediaError as exc:
            pending.state = "rejected"
            self._reply(request, source, 503, "Service Unavailable", to_tag=pending.local_tag)
            raise CallFailed(EndReason.FAILED, str(exc)) from exc
        remote = (offer.address, offer.port) if offer else None
        session = RtpSession(
            sock,
            self.clock,
            payload_type=payload_type,
            event_payload_type=event_pt,
            remote=remote,
            inactivity_timeout_s=self.config.media_timeout_s,
        )
        if offer is not None:
            session.set_peer_direction(offer.direction)
        contact = request.get("Contact")
        call = SipCall(
            self,
            pending.info,
            session,
            local_tag=pending.local_tag,
            local_party=_with_tag(request.get("To") or "", pending.local_tag),
            remote_party=request.get("From") or "",
            remote_target=header_uri(contact) if contact else header_uri(request.get("From")),
            peer=source,
            route_set=request.get_all("Record-Route"),
        )
        await session.start()
        pending.state = "answered"
        pending.call = call
        self._dialogs[(call.info.call_id, call.local_tag)] = call
        codecs = [payload_type] if offer else list(self.config.codecs)
        direction = ANSWER_DIRECTION[offer.direction] if offer else "sendrecv"
        body = build_sdp(
            self.host_for(source),
            session.local[1],
            codecs,
            event_payload_type=event_pt,
            direction=direction,
        )
        ok = self._response(request, source, 200, to_tag=pending.local_tag, body=body)
        self._spawn(self._send_until_acked(call, ok.build(), source))
        return call

    async def _send_until_acked(self, call: SipCall, data: bytes, dest: tuple[str, int]) -> None:
        interval, elapsed = T1, 0.0
        while not call.acked.is_set() and elapsed < TRANSACTION_TIMEOUT:
            if call.end_reason is not None:
                return
            self._send(data, dest)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(call.acked.wait(), interval)
            elapsed += interval
            interval = min(interval * 2, T2)
        if not call.acked.is_set():
            log.info("no ACK for %s: hanging up", call.info.call_id)
            await call._send_bye(EndReason.FAILED)

    def _on_ack(self, request: SipMessage, source: tuple[str, int]) -> None:
        call = self._dialog_of(request)
        if call is None:
            return  # ACK for a non-2xx final answer: absorbed
        call.acked.set()
        if request.body:  # answer to our late offer
            with contextlib.suppress(SdpError):
                answer = parse_sdp(request.body)
                pt, event_pt = answer.choose(self.config.codecs)
                call.session.set_codec(pt, event_pt)
                call.session.remote = (answer.address, answer.port)

    def _on_cancel(self, request: SipMessage, source: tuple[str, int]) -> None:
        pending = self._pending.get(request.branch)
        if pending is None or pending.request.call_id != request.call_id:
            self._reply(request, source, 481)
            return
        self._reply(request, source, 200, to_tag=pending.local_tag)
        if pending.state == "ringing":
            pending.state = "cancelled"
            self._reply(pending.request, pending.source, 487, to_tag=pending.local_tag)

    def _on_bye(self, request: SipMessage, source: tuple[str, int]) -> None:
        call = self._dialog_of(request)
        if call is None:
            self._reply(request, source, 481)
            return
        self._reply(request, source, 200)
        call._on_remote_bye()

    def _on_info(self, request: SipMessage, source: tuple[str, int]) -> None:
        call = self._dialog_of(request)
        if call is None:
            self._reply(request, source, 481)
            return
        self._reply(request, source, 200)
        if "dtmf-relay" in (request.get("Content-Type") or "").lower():
            match = re.search(rb"Signal\s*=\s*([0-9A-D*#])", request.body, re.IGNORECASE)
            duration = re.search(rb"Duration\s*=\s*(\d+)", request.body, re.IGNORECASE)
            if match:
                call.session.push_dtmf(
                    DtmfEvent(
                        match.group(1).decode().upper(), int(duration.group(1)) if duration else 0
                    )
                )

    def _on_refer(self, request: SipMessage, source: tuple[str, int]) -> None:
        """The far end transfers us (RFC 3515): 202, then the application decides."""
        call = self._dialog_of(request)
        if call is None:
            self._reply(request, source, 481)
            return
        try:
            target = parse_refer_to(request.get_all("Refer-To"))
        except TransferError as exc:
            self._reply(request, source, exc.code, exc.reason)
            return
        if call._offer is not None or call._refer is not None:
            self._reply(request, source, 491, "Request Pending")
            return
        if self.on_transfer is None:
            self._reply(request, source, 603, "Decline")
            return
        contact = request.get("Contact")
        if contact:  # REFER is a target refresh request (RFC 3515)
            call.remote_target = header_uri(contact)
        notify = (request.get("Refer-Sub") or "").strip().lower() != "false"
        extra = () if notify else (("Refer-Sub", "false"),)
        self._reply(request, source, 202, "Accepted", extra=extra)
        referred_by = request.get("Referred-By")
        offer = _TransferOffer(
            call,
            target,
            header_uri(referred_by) if referred_by else None,
            event_id=str(request.cseq()[0]),
            notify=notify,
        )
        call._offer = offer
        self._spawn(self._run_transfer_offer(offer, self.on_transfer))

    async def _run_transfer_offer(self, offer: _TransferOffer, handler: TransferHandler) -> None:
        try:
            # RFC 3515: an accepted REFER gets an immediate NOTIFY
            await offer.report(100, "Trying", terminated=False, wait=False)
            await handler(offer)
        except asyncio.CancelledError:  # endpoint stopping: no more reports
            offer.state = "declined"
            raise
        except CallFailed as exc:
            log.info("call %s: transfer to %s failed: %s", offer.call.info.call_id,
                     offer.target, exc)  # fmt: skip
        except Exception:
            log.exception("transfer handler failed for %s", offer.call.info.call_id)
        finally:
            offer.call._offer = None
            await offer.decline()  # a no-op once accepted or declined

    def _on_notify(self, request: SipMessage, source: tuple[str, int]) -> None:
        """Progress of a transfer we asked for (sipfrag bodies)."""
        watch = self._refers.get((request.call_id, request.to_tag or ""))
        if watch is None:
            self._reply(request, source, 481)
            return
        event, _, params = (request.get("Event") or "").partition(";")
        if event.strip().lower() != "refer":
            self._reply(request, source, 489, "Bad Event")
            return
        event_id = re.search(r"(?:^|;)\s*id\s*=\s*([^;\s]+)", params, re.IGNORECASE)
        if event_id and event_id.group(1) != watch.event_id:
            self._reply(request, source, 481)  # an older REFER's subscription
            return
        content_type = (request.get("Content-Type") or "").split(";")[0].strip().lower()
        status = parse_sipfrag(request.body) if request.body else None
        if request.body and (content_type != "message/sipfrag" or status is None):
            self._reply(request, source, 400, "Bad Request - body is not a sipfrag status")
            return
        state = (request.get("Subscription-State") or "").split(";")[0].strip().lower()
        self._reply(request, source, 200)
        watch.on_notify(status, terminated=state == "terminated")

    def _on_reinvite(self, request: SipMessage, source: tuple[str, int]) -> None:
        call = self._dialog_of(request)
        if call is None:
            self._reply(request, source, 481)
            return
        session = call.session
        direction = "sendrecv"
        if request.body:
            try:
                offer = parse_sdp(request.body)
                payload_type, event_pt = offer.choose(self.config.codecs)
            except SdpError:
                self._reply(request, source, 488, "Not Acceptable Here")
                return
            # the same RTP session is updated in place: never a second sender
            session.set_codec(payload_type, event_pt)
            if offer.direction != "inactive" and offer.address != "0.0.0.0":
                session.remote = (offer.address, offer.port)
            session.set_peer_direction(offer.direction)
            direction = ANSWER_DIRECTION[offer.direction]
        call.sdp_version += 1
        call.acked.clear()
        body = build_sdp(
            self.host_for(source),
            session.local[1],
            [session.payload_type],
            event_payload_type=session.event_payload_type,
            direction=direction,
            version=call.sdp_version,
        )
        ok = self._response(request, source, 200, body=body)
        self._spawn(self._send_until_acked(call, ok.build(), source))

    # ---- responses ----

    def _on_response(self, response: SipMessage) -> None:
        transaction = self._transactions.get(response.branch)
        _, method = response.cseq()
        if transaction is not None and transaction.request.method == method:
            transaction.on_response(response)
            return
        if method == "INVITE" and 200 <= (response.status or 0) < 300:
            ack = self._acks.get(response.call_id)  # our ACK was lost: send it again
            if ack is not None:
                self._send(*ack)

    # ---- outbound calls ----

    async def place_call(self, uri: str, *, ring_timeout_s: float = 30.0) -> SipCall:
        trunk = self.config.trunk
        dest = trunk.registrar if trunk else uri_destination(uri)
        host = self.host_for(dest)
        local_tag = _token()
        call_id = new_call_id(host)
        user_host = trunk.domain or trunk.registrar[0] if trunk else host
        user = trunk.username if trunk else self.config.user
        from_value = f"<sip:{user}@{user_host}>;tag={local_tag}"
        to_value = f"<{uri}>"
        try:
            sock = bind_rtp_socket(self.config.media_bind_host, self.config.rtp_ports)
        except MediaError as exc:
            raise CallFailed(EndReason.FAILED, str(exc)) from exc
        offer = build_sdp(host, sock.getsockname()[1], list(self.config.codecs))
        cseq = 1
        auth_header: tuple[str, str] | None = None
        deadline = asyncio.get_running_loop().time() + ring_timeout_s
        try:
            while True:
                invite = self._new_request(
                    "INVITE", uri, from_value=from_value, to_value=to_value,
                    call_id=call_id, cseq=cseq, dest=dest,
                )  # fmt: skip
                if auth_header:
                    invite.add(*auth_header)
                invite.add("Content-Type", "application/sdp")
                invite.body = offer
                transaction = self._request(invite, dest)
                response = await self._await_invite(transaction, deadline, uri, dest)
                code = response.status or 0
                if code in (401, 407) and trunk and auth_header is None:
                    self._ack_failure(invite, response, dest)
                    transaction.close()
                    auth_header = self._auth_for(response, "INVITE", uri)
                    cseq += 1
                    continue
                if 200 <= code < 300:
                    return await self._established(
                        invite, response, dest, sock, from_value, uri, transaction
                    )
                self._ack_failure(invite, response, dest)
                transaction.close()
                raise CallFailed(_failure_reason(code), f"{code} {response.reason}")
        except BaseException:
            sock.close()
            raise

    async def _await_invite(
        self, transaction: _Transaction, deadline: float, uri: str, dest: tuple[str, int]
    ) -> SipMessage:
        loop = asyncio.get_running_loop()
        while True:
            remaining = deadline - loop.time()
            try:
                async with asyncio.timeout(max(remaining, 0)):
                    response = await transaction.responses.get()
            except TimeoutError:
                return await self._cancel(transaction, dest)
            if response is None:
                raise CallFailed(EndReason.NO_ANSWER, f"no response from {dest}")
            if (response.status or 0) >= 200:
                return response

    async def _cancel(self, transaction: _Transaction, dest: tuple[str, int]) -> SipMessage:
        """Ring timeout: CANCEL, then wait for the INVITE's final answer (487)."""
        invite = transaction.request
        cancel = SipMessage(method="CANCEL", uri=invite.uri)
        for name in ("Via", "Max-Forwards", "From", "To", "Call-ID"):
            cancel.add(name, invite.get(name) or "")
        cancel.add("CSeq", f"{invite.cseq()[0]} CANCEL")
        cancel.add("User-Agent", USER_AGENT)
        # CANCEL shares the INVITE's branch: its transaction is keyed apart
        cancel_data = cancel.build()
        self._send(cancel_data, dest)
        try:
            async with asyncio.timeout(TRANSACTION_TIMEOUT / 4):
                while True:
                    response = await transaction.responses.get()
                    if response is None:
                        break
                    if (response.status or 0) >= 200:
                        if response.status == 487:
                            response.status = 408  # report it as the ring timeout it was
                        return response
        except TimeoutError:
            pass
        return SipMessage(status=408, reason="Request Timeout")

    def _ack_failure(self, invite: SipMessage, response: SipMessage, dest) -> None:
        if response.status == 408 and not response.headers:
            return  # synthesised timeout: nothing to ACK
        ack = SipMessage(method="ACK", uri=invite.uri)
        ack.add("Via", invite.get("Via") or "")
        ack.add("Max-Forwards", "70")
        ack.add("From", invite.get("From") or "")
        ack.add("To", response.get("To") or "")
        ack.add("Call-ID", invite.call_id)
        ack.add("CSeq", f"{invite.cseq()[0]} ACK")
        self._send(ack.build(), dest)

    async def _established(
        self,
        invite: SipMessage,
        response: SipMessage,
        dest: tuple[str, int],
        sock,
        from_value: str,
        uri: str,
        transaction: _Transaction,
    ) -> SipCall:
        contact = response.get("Contact")
        remote_target = header_uri(contact) if contact else uri
        route_set = list(reversed(response.get_all("Record-Route")))
        to_value = response.get("To") or ""  # carries the peer's tag: ACK and BYE reuse it
        ack = self._new_request(
            "ACK", remote_target, from_value=from_value, to_value=to_value,
            call_id=invite.call_id, cseq=invite.cseq()[0], dest=dest,
        )  # fmt: skip
        ack.headers = [(k, v) for k, v in ack.headers if k != "Contact"]
        for route in route_set:
            ack.add("Route", route)
        ack_data = ack.build()
        self._send(ack_data, dest)
        self._acks[invite.call_id] = (ack_data, dest)
        while len(self._acks) > 1000:
            self._acks.popitem(last=False)
        transaction.final = True
        self._transactions.pop(invite.branch, None)  # 200 retransmissions go to _acks
        try:
            answer = parse_sdp(response.body)
            payload_type, event_pt = answer.choose(self.config.codecs)
            remote = (answer.address, answer.port)
        except SdpError as exc:
            raise CallFailed(EndReason.FAILED, f"unusable SDP answer: {exc}") from exc
        session = RtpSession(
            sock,
            self.clock,
            payload_type=payload_type,
            event_payload_type=event_pt,
            remote=remote,
            inactivity_timeout_s=self.config.media_timeout_s,
        )
        info = CallInfo(
            call_id=invite.call_id,
            direction="outbound",
            caller=header_uri(from_value),
            callee=uri,
            headers=dict(response.headers),
        )
        call = SipCall(
            self,
            info,
            session,
            local_tag=header_tag(from_value) or "",
            local_party=from_value,
            remote_party=to_value,
            remote_target=remote_target,
            peer=dest,
            route_set=route_set,
            local_cseq=invite.cseq()[0],
        )
        call.acked.set()
        await session.start()
        self._dialogs[(call.info.call_id, call.local_tag)] = call
        return call

    # ---- registration (trunk mode) ----

    def _auth_for(self, response: SipMessage, method: str, uri: str) -> tuple[str, str]:
        trunk = self.config.trunk
        assert trunk is not None
        proxy = response.status == 407
        challenge_value = response.get("Proxy-Authenticate" if proxy else "WWW-Authenticate")
        if not challenge_value:
            raise SipError(f"{response.status} without a challenge")
        try:
            value = authorization(
                parse_challenge(challenge_value),
                method=method,
                uri=uri,
                username=trunk.username,
                password=trunk.password,
            )
        except DigestError as exc:
            raise SipError(str(exc)) from exc
        return ("Proxy-Authorization" if proxy else "Authorization", value)

    async def _register(self, expires_s: int) -> int:
        trunk = self.config.trunk
        assert trunk is not None
        domain = trunk.domain or trunk.registrar[0]
        uri = f"sip:{domain}"
        aor = f"<sip:{trunk.username}@{domain}>"
        auth_header: tuple[str, str] | None = None
        for _ in range(2):  # once plain, once answering the challenge
            self._register_cseq += 1
            request = self._new_request(
                "REGISTER", uri, from_value=f"{aor};tag={_token()}", to_value=aor,
                call_id=self._register_call_id, cseq=self._register_cseq, dest=trunk.registrar,
            )  # fmt: skip
            request.add("Expires", str(expires_s))
            if auth_header:
                request.add(*auth_header)
            transaction = self._request(request, trunk.registrar)
            try:
                response = await transaction.final_response()
            except TimeoutError as exc:
                raise SipError(f"registrar {trunk.registrar} did not answer REGISTER") from exc
            finally:
                transaction.close()
            code = response.status or 0
            if code in (401, 407) and auth_header is None:
                auth_header = self._auth_for(response, "REGISTER", uri)
                continue
            if 200 <= code < 300:
                if expires_s:
                    self.registered.set()
                else:
                    self.registered.clear()
                return _granted_expires(response, expires_s)
            break
        raise SipError(
            f"registrar {trunk.registrar} refused {trunk.username}: {code} {response.reason}"
        )

    async def _keep_registered(self, expires_s: int) -> None:
        trunk = self.config.trunk
        assert trunk is not None
        while True:
            await asyncio.sleep(max(expires_s * 0.8, 5))
            try:
                expires_s = await self._register(trunk.expires_s)
            except SipError as exc:  # keep trying: a registrar restart must not kill us
                log.warning("re-registration failed: %s", exc)
                expires_s = 15


def _with_tag(value: str, tag: str) -> str:
    return value if header_tag(value) else f"{value};tag={tag}"


def _granted_expires(response: SipMessage, asked: int) -> int:
    for contact in response.get_all("Contact"):
        match = re.search(r";\s*expires=(\d+)", contact, re.IGNORECASE)
        if match:
            return int(match.group(1))
    value = response.get("Expires")
    return int(value) if value and value.isdigit() else asked


def _failure_reason(code: int) -> EndReason:
    if code in (486, 600):
        return EndReason.BUSY
    if code in (408, 480, 487):
        return EndReason.NO_ANSWER
    if 400 <= code < 700:
        return EndReason.REJECTED
    return EndReason.FAILED


class _SipProtocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: SipEndpoint) -> None:
        self.endpoint = endpoint

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.endpoint._on_datagram(data, addr[:2])

    def error_received(self, exc: Exception) -> None:
        log.debug("SIP socket error: %s", exc)
