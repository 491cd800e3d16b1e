"""Our asyncio RTP media path for one call.

Receives RTP (G.711 at 16 bits, RFC 4733 events) into a jitter buffer that a
shared 20 ms clock plays out as PCM frames; sends queued PCM on the same clock,
silence when nothing is queued. Symmetric RTP (we answer to where the peer's
RTP really comes from), an inactivity timeout, and garbage datagrams ignored.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import numpy as np

from telephony.clock import MediaClock
from telephony.dtmf import DtmfError, TelephoneEvent, check_digits, parse_event
from telephony.g711 import CODECS
from telephony.interface import FRAME_BYTES, FRAME_SAMPLES, DtmfEvent
from telephony.jitter import JitterBuffer
from telephony.rtp import RtpError, RtpPacket, parse_rtp

log = logging.getLogger(__name__)

SILENCE_FRAME = bytes(FRAME_BYTES)
_DTMF_FRAMES = 8  # 160 ms per digit
_DTMF_END_REPEATS = 3  # RFC 4733: the end packet is sent three times
_DTMF_GAP_FRAMES = 3  # 60 ms between digits


class MediaError(Exception):
    """The media session could not be set up (no free port, bad address)."""


@dataclass
class MediaStats:
    packets_in: int = 0
    packets_out: int = 0
    garbage_in: int = 0  # datagrams that were not RTP we expect
    dtmf_in: int = 0
    underruns: int = 0  # ticks with nothing queued to send while a write was pending


def bind_rtp_socket(host: str, port_range: tuple[int, int]) -> socket.socket:
    """A UDP socket on the first free even port in [start, end)."""
    start, end = port_range
    for port in range(start + start % 2, end, 2):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            continue
        sock.setblocking(False)
        return sock
    raise MediaError(f"no free RTP port on {host} in {start}-{end}")


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, session: RtpSession) -> None:
        self.session = session

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.session._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable while the peer is not listening yet: not fatal
        log.debug("RTP socket error: %s", exc)


class RtpSession:
    def __init__(
        self,
        sock: socket.socket,
        clock: MediaClock,
        *,
        payload_type: int = 0,
        event_payload_type: int | None = 101,
        remote: tuple[str, int] | None = None,
        inactivity_timeout_s: float = 30.0,
        on_timeout: Callable[[], None] | None = None,
        max_queue_s: float = 120.0,
    ) -> None:
        self.sock = sock
        self.local = sock.getsockname()[:2]
        self.clock = clock
        self.stats = MediaStats()
        self.jitter = JitterBuffer()
        self.remote = remote
        self.inactivity_timeout_s = inactivity_timeout_s
        self.on_timeout = on_timeout
        # SDP direction, from our side: hold means we stop sending and/or stop
        # expecting RTP (no inactivity timeout while the peer sends nothing)
        self.sending = True
        self.expect_rx = True
        self.set_codec(payload_type, event_payload_type)
        self._ssrc = secrets.randbits(32)
        self._seq = secrets.randbits(16)
        self._ts = secrets.randbits(32)
        self._peer_ssrc: int | None = None
        self._out = bytearray()
        # Start of the current burst of queued audio on the wire (see Call.audio_out_started_at)
        self._audio_out_started_at: float | None = None
        self._bursting = False  # the last tick sent queued audio: no new burst yet
        self._max_queue_bytes = int(max_queue_s * 8000) * 2
        self._space = asyncio.Event()
        self._space.set()
        self._drained = asyncio.Event()
        self._drained.set()
        self._dtmf_out: list[bytes] = []  # prepared RFC 4733 packets, one per tick
        self._dtmf_done: asyncio.Event = asyncio.Event()
        self._dtmf_done.set()
        self._audio_in: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=50)
        self._dtmf_in: asyncio.Queue[DtmfEvent | None] = asyncio.Queue(maxsize=64)
        self._seen_event_ts: list[int] = []
        self._current_event: tuple[int, TelephoneEvent] | None = None
        self._last_rx = time.monotonic()
        self._transport: asyncio.DatagramTransport | None = None
        self._closed = False

    def set_peer_direction(self, direction: str) -> None:
        """Apply the direction the peer's SDP asked for (RFC 3264 hold/resume)."""
        self.sending = direction in ("sendrecv", "recvonly")
        self.expect_rx = direction in ("sendrecv", "sendonly")
        self._last_rx = time.monotonic()

    def set_codec(self, payload_type: int, event_payload_type: int | None) -> None:
        if payload_type not in CODECS:
            raise MediaError(f"unsupported payload type {payload_type}")
        self.payload_type = payload_type
        self.event_payload_type = event_payload_type
        _, self._encode, self._decode = CODECS[payload_type]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=self.sock)
        self._transport = transport
        self._last_rx = time.monotonic()
        self.clock.add(self, self._tick, self._play_out)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.clock.remove(self)
        if self._transport is not None:
            self._transport.close()
        else:
            self.sock.close()
        self._out.clear()
        self._drained.set()
        self._space.set()
        self._dtmf_done.set()
        for queue in (self._audio_in, self._dtmf_in):
            _put_dropping_oldest(queue, None)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def audio_out_started_at(self) -> float | None:
        """When the first packet of the latest burst of queued audio was sent."""
        return self._audio_out_started_at

    # ---- receive ----

    def _on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            packet = parse_rtp(data)
        except RtpError:
            self.stats.garbage_in += 1
            return
        pt = packet.payload_type
        if pt != self.payload_type and pt != self.event_payload_type:
            self.stats.garbage_in += 1  # comfort noise, a codec we did not offer...
            return
        self.stats.packets_in += 1
        self._last_rx = time.monotonic()
        if self.remote != addr:
            self.remote = addr  # symmetric RTP: reply where the media really comes from
        if self._peer_ssrc is not None and packet.ssrc != self._peer_ssrc:
            self.jitter.reset()
        self._peer_ssrc = packet.ssrc
        if pt == self.event_payload_type:
            self._on_event(packet)
        else:
            self.jitter.push(packet.sequence, packet.payload)

    def _on_event(self, packet: RtpPacket) -> None:
        try:
            event = parse_event(packet.payload)
        except DtmfError:
            self.stats.garbage_in += 1
            return
        # One key press = many packets sharing a timestamp; report it once, at its end
        # (or when the next key starts, if every end packet was lost).
        if packet.timestamp in self._seen_event_ts:
            return
        current = self._current_event
        if current is not None and current[0] != packet.timestamp:
            self._emit_dtmf(*current)
        self._current_event = (packet.timestamp, event)
        if event.end:
            self._emit_dtmf(packet.timestamp, event)

    def _emit_dtmf(self, timestamp: int, event: TelephoneEvent) -> None:
        self._seen_event_ts.append(timestamp)
        del self._seen_event_ts[:-16]
        self._current_event = None
        self.stats.dtmf_in += 1
        _put_dropping_oldest(self._dtmf_in, DtmfEvent(event.digit, event.duration // 8))

    def push_dtmf(self, event: DtmfEvent) -> None:
        """A digit that arrived by signalling (SIP INFO) rather than RTP."""
        self.stats.dtmf_in += 1
        _put_dropping_oldest(self._dtmf_in, event)

    async def audio_in(self) -> AsyncIterator[bytes]:
        while True:
            frame = await self._audio_in.get()
            if frame is None:
                return
            yield frame

    async def dtmf_in(self) -> AsyncIterator[DtmfEvent]:
        while True:
            event = await self._dtmf_in.get()
            if event is None:
                return
            yield event

    # ---- send ----

    async def write(self, pcm: bytes) -> None:
        if len(pcm) % 2:
            raise ValueError("16-bit PCM must have an even number of bytes")
        if self._closed:
            return
        while len(self._out) >= self._max_queue_bytes and not self._closed:
            self._space.clear()
            await self._space.wait()
        self._out += pcm
        if self._out:
            self._drained.clear()

    def flush(self) -> int:
        dropped = len(self._out) // 2
        self._out.clear()
        self._bursting = False
        self._drained.set()
        self._space.set()
        return dropped

    async def drain(self) -> None:
        await self._drained.wait()

    async def send_dtmf(self, digits: str) -> None:
        digits = check_digits(digits)
        if self.event_payload_type is None:
            raise DtmfError("the peer did not negotiate telephone-event")
        await self._dtmf_done.wait()
        for digit in digits:
            self._queue_digit(digit)
        self._dtmf_done.clear()
        await self._dtmf_done.wait()

    def _queue_digit(self, digit: str) -> None:
        # Each packet is built when its tick comes (seq/ts are assigned then);
        # here we store (digit, duration, end) descriptors encoded as payloads.
        for i in range(1, _DTMF_FRAMES + 1):
            end = i == _DTMF_FRAMES
            repeats = _DTMF_END_REPEATS if end else 1
            for _ in range(repeats):
                payload = TelephoneEvent(digit, end, 10, i * FRAME_SAMPLES).build()
                self._dtmf_out.append(payload)
        self._dtmf_out.extend([b""] * _DTMF_GAP_FRAMES)  # b"": a gap tick, audio resumes

    # ---- the 20 ms tick ----

    def _tick(self) -> None:
        if self._closed:
            return
        now = time.monotonic()
        if (
            self.expect_rx
            and self.inactivity_timeout_s > 0
            and now - self._last_rx > self.inactivity_timeout_s
        ):
            log.info("no RTP for %.1f s on %s: ending the call", now - self._last_rx, self.local)
            callback = self.on_timeout
            self.close()
            if callback is not None:
                callback()
            return
        self._send_frame()

    def _play_out(self) -> None:
        if self._closed:
            return
        payload = self.jitter.pop()
        frame = self._decode(payload).tobytes() if payload else SILENCE_FRAME
        if len(frame) != FRAME_BYTES:  # peer packetises at another ptime: fit to 20 ms
            frame = frame[:FRAME_BYTES].ljust(FRAME_BYTES, b"\0")
        _put_dropping_oldest(self._audio_in, frame)

    def _send_frame(self) -> None:
        if self._dtmf_out:
            self._send_dtmf_tick()
            return
        queued = bool(self._out)
        if queued:
            frame = bytes(self._out[:FRAME_BYTES]).ljust(FRAME_BYTES, b"\0")
            del self._out[:FRAME_BYTES]
            if len(self._out) < self._max_queue_bytes:
                self._space.set()
            if not self._out:
                self._drained.set()
        else:
            frame = SILENCE_FRAME
        payload = self._encode(np.frombuffer(frame, dtype="<i2"))
        sent = self._send(RtpPacket(self.payload_type, self._seq, self._ts, self._ssrc, payload))
        self._ts += FRAME_SAMPLES
        if queued and sent and not self._bursting:
            self._audio_out_started_at = time.monotonic()  # right after the sendto
        # A burst ends only at a tick that finds nothing queued (silence goes out)
        self._bursting = queued and sent

    def _send_dtmf_tick(self) -> None:
        payload = self._dtmf_out.pop(0)
        if payload:
            first = self._dtmf_event_ts is None
            if first:
                self._dtmf_event_ts = self._ts
            packet = RtpPacket(
                self.event_payload_type or 101,
                self._seq,
                self._dtmf_event_ts,
                self._ssrc,
                payload,
                marker=first,
            )
            self._send(packet)
            if payload[1] & 0x80 and (not self._dtmf_out or not self._dtmf_out[0]):
                self._dtmf_event_ts = None  # last end packet of this digit
        else:
            self._send(RtpPacket(self.payload_type, self._seq, self._ts, self._ssrc, self._silence))
        self._ts += FRAME_SAMPLES
        if not self._dtmf_out:
            self._dtmf_done.set()

    _dtmf_event_ts: int | None = None

    @property
    def _silence(self) -> bytes:
        return self._encode(np.zeros(FRAME_SAMPLES, dtype=np.int16))

    def _send(self, packet: RtpPacket) -> bool:
        """Send one packet; False when it could not go out (no peer yet, on hold)."""
        if self.remote is None or self._transport is None or not self.sending:
            return False  # nowhere to send yet / peer put us on hold: keep the clock
        self._transport.sendto(packet.build(), self.remote)
        self._seq = (self._seq + 1) & 0xFFFF
        self.stats.packets_out += 1
        return True


def _put_dropping_oldest(queue: asyncio.Queue, item: object) -> None:
    """Never block the media clock on a slow consumer: old audio is worth least."""
    while True:
        try:
            queue.put_nowait(item)
            return
        except asyncio.QueueFull:
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                pass
