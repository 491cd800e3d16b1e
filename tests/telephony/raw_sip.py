"""A scripted SIP peer on a plain UDP socket (loopback): the test writes every
message itself, so it can send what no well-behaved peer would."""

from __future__ import annotations

import asyncio
import secrets

from telephony.sip_message import SipMessage, header_uri, parse_message

SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, queue: asyncio.Queue[tuple[bytes, tuple[str, int]]]) -> None:
        self.queue = queue

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait((data, addr[:2]))


class RawSipPeer:
    def __init__(self, port: int, user: str = "raw") -> None:
        self.port = port
        self.user = user
        self.uri = f"sip:{user}@127.0.0.1:{port}"
        self.tag = secrets.token_hex(4)
        self.cseq = 100
        self._queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self._transport: asyncio.DatagramTransport | None = None

    async def __aenter__(self) -> RawSipPeer:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self._queue), local_addr=("127.0.0.1", self.port)
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._transport is not None:
            self._transport.close()

    def send(self, message: SipMessage | bytes, dest: tuple[str, int]) -> None:
        assert self._transport is not None
        data = message if isinstance(message, bytes) else message.build()
        self._transport.sendto(data, dest)

    async def recv(
        self, *, method: str | None = None, status: int | None = None, timeout_s: float = 5.0
    ) -> tuple[SipMessage, tuple[str, int]]:
        """The next message matching `method` (a request) or `status` (a response);
        others (retransmissions, provisional answers) are skipped."""
        async with asyncio.timeout(timeout_s):
            for _ in range(200):
                data, source = await self._queue.get()
                message = parse_message(data)
                if method is not None and message.method != method:
                    continue
                if status is not None and message.status != status:
                    continue
                return message, source
        raise AssertionError(f"no {method or status} among 200 messages")

    async def recv_data(self, timeout_s: float = 5.0) -> bytes:
        """The next datagram as it came (for answers our parser would refuse)."""
        async with asyncio.timeout(timeout_s):
            data, _ = await self._queue.get()
        return data

    async def nothing_more(self, method: str, wait_s: float = 1.0) -> bool:
        """True when no `method` request arrives within wait_s."""
        try:
            await self.recv(method=method, timeout_s=wait_s)
        except TimeoutError:
            return True
        return False

    def reply(
        self,
        request: SipMessage,
        dest: tuple[str, int],
        code: int,
        reason: str = "OK",
        *,
        body: str = "",
        extra: tuple[tuple[str, str], ...] = (),
    ) -> SipMessage:
        response = SipMessage(status=code, reason=reason)
        for via in request.get_all("Via"):
            response.add("Via", via)
        response.add("From", request.get("From") or "")
        to = request.get("To") or ""
        response.add("To", to if "tag=" in to else f"{to};tag={self.tag}")
        response.add("Call-ID", request.call_id)
        response.add("CSeq", request.get("CSeq") or "")
        if request.method == "INVITE" and code == 200:
            response.add("Contact", f"<{self.uri}>")
        for name, value in extra:
            response.add(name, value)
        if body:
            response.add("Content-Type", "application/sdp")
            response.body = body.encode()
        self.send(response, dest)
        return response

    def request(
        self,
        method: str,
        uri: str,
        *,
        call_id: str,
        from_value: str,
        to_value: str,
        extra: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
        cseq: int | None = None,
    ) -> SipMessage:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        message = SipMessage(method=method, uri=uri)
        branch = f"z9hG4bK{secrets.token_hex(6)}"
        message.add("Via", f"SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch};rport")
        message.add("Max-Forwards", "70")
        message.add("From", from_value)
        message.add("To", to_value)
        message.add("Call-ID", call_id)
        message.add("CSeq", f"{cseq} {method}")
        message.add("Contact", f"<{self.uri}>")
        for name, value in extra:
            message.add(name, value)
        message.body = body
        return message


class RawDialog:
    """One established call between a RawSipPeer and an endpoint: in-dialog
    requests from the raw side."""

    def __init__(
        self, peer: RawSipPeer, dest: tuple[str, int], call_id: str, ours: str, theirs: str,
        target: str,
    ) -> None:  # fmt: skip
        self.peer = peer
        self.dest = dest
        self.call_id = call_id
        self.ours = ours  # our From value (with our tag)
        self.theirs = theirs  # their To value (with their tag)
        self.target = target  # their Contact URI
        self.answer: SipMessage | None = None  # their 200 to our INVITE

    def request(
        self, method: str, extra: tuple[tuple[str, str], ...] = (), body: bytes = b""
    ) -> SipMessage:
        return self.peer.request(
            method, self.target, call_id=self.call_id, from_value=self.ours,
            to_value=self.theirs, extra=extra, body=body,
        )  # fmt: skip

    async def send(
        self, method: str, extra: tuple[tuple[str, str], ...] = (), body: bytes = b""
    ) -> SipMessage:
        """Send an in-dialog request; its final answer."""
        request = self.request(method, extra, body)
        self.peer.send(request, self.dest)
        for _ in range(20):
            response, _ = await self.peer.recv()
            if response.status and response.status >= 200 and response.cseq()[1] == method:
                if response.branch == request.branch:
                    return response
        raise AssertionError(f"no final answer to {method}")


async def call_endpoint(peer: RawSipPeer, dest: tuple[str, int], media_port: int) -> RawDialog:
    """INVITE the endpoint at `dest` from the raw peer, wait for its 200, ACK."""
    call_id = f"raw-{secrets.token_hex(6)}"
    ours = f"<{peer.uri}>;tag={peer.tag}"
    target = f"sip:agent@{dest[0]}:{dest[1]}"
    invite = peer.request(
        "INVITE", target, call_id=call_id, from_value=ours, to_value=f"<{target}>",
        extra=(("Content-Type", "application/sdp"),),
        body=SDP.format(port=media_port).encode(), cseq=1,
    )  # fmt: skip
    peer.send(invite, dest)
    ok, _ = await peer.recv(status=200)
    theirs = ok.get("To") or ""
    contact = header_uri(ok.get("Contact") or "")
    ack = peer.request("ACK", contact, call_id=call_id, from_value=ours, to_value=theirs, cseq=1)
    peer.send(ack, dest)
    dialog = RawDialog(peer, dest, call_id, ours, theirs, contact)
    dialog.answer = ok
    return dialog


async def answer_call(peer: RawSipPeer, media_port: int) -> tuple[RawDialog, SipMessage]:
    """Answer the next INVITE the raw peer gets (200 with SDP); wait for the ACK."""
    invite, source = await peer.recv(method="INVITE")
    ok = peer.reply(invite, source, 200, body=SDP.format(port=media_port))
    await peer.recv(method="ACK")
    contact = header_uri(invite.get("Contact") or "")
    dialog = RawDialog(
        peer, source, invite.call_id, ok.get("To") or "", invite.get("From") or "", contact
    )
    return dialog, invite
