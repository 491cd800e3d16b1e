"""The one telephony interface the agent uses, whatever carries the call.

SIP/RTP and the WebSocket media transport both implement it. Audio is always
16-bit signed PCM, mono, 8 kHz, in 20 ms frames (160 samples, 320 bytes).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
FRAME_BYTES = FRAME_SAMPLES * 2


class EndReason(enum.StrEnum):
    LOCAL_HANGUP = "local_hangup"
    REMOTE_HANGUP = "remote_hangup"
    CANCELLED = "cancelled"  # caller gave up before answer
    REJECTED = "rejected"  # we or the far end refused
    NO_ANSWER = "no_answer"  # ring timeout
    BUSY = "busy"
    FAILED = "failed"  # signalling error
    MEDIA_TIMEOUT = "media_timeout"  # no RTP for too long
    TRANSPORT_CLOSED = "transport_closed"
    TRANSFERRED = "transferred"  # handed on to another party (SIP REFER)


@dataclass(frozen=True)
class CallInfo:
    call_id: str
    direction: str  # "inbound" | "outbound"
    caller: str  # URI
    callee: str  # URI
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DtmfEvent:
    digit: str  # 0-9 * # A-D
    duration_ms: int


@runtime_checkable
class Call(Protocol):
    info: CallInfo

    def audio_in(self) -> AsyncIterator[bytes]:
        """Caller audio, 20 ms frames of 16-bit PCM at 8 kHz, gaps filled with silence."""
        ...

    def dtmf_in(self) -> AsyncIterator[DtmfEvent]: ...

    async def write(self, pcm: bytes) -> None:
        """Queue audio to send (any length of 16-bit PCM at 8 kHz); paced out at 20 ms."""
        ...

    def flush(self) -> int:
        """Drop queued outgoing audio at once (barge-in); returns samples dropped."""
        ...

    async def drain(self) -> None:
        """Wait until every queued frame has been sent."""
        ...

    async def send_dtmf(self, digits: str) -> None: ...

    async def hangup(self) -> None: ...

    async def transfer(self, target_uri: str, *, timeout_s: float = 30.0) -> bool:
        """Blind transfer: ask the far end to call `target_uri` instead. True once the
        target answered (this call then ends as TRANSFERRED); False when refused, failed
        or timed out, and this call goes on unchanged. Transports without transfer
        return False."""
        ...

    async def wait_ended(self) -> EndReason: ...

    @property
    def end_reason(self) -> EndReason | None: ...

    @property
    def audio_out_started_at(self) -> float | None:
        """Optional: time.monotonic() when the first frame of the latest burst of
        queued audio actually left (the send queue went from empty to sending); kept
        until the next burst starts. None before any audio was sent. Read with
        getattr(call, "audio_out_started_at", None): older transports lack it."""
        ...


class IncomingCall(Protocol):
    info: CallInfo

    async def answer(self) -> Call: ...

    async def reject(self, code: int = 486, reason: str = "Busy Here") -> None: ...


IncomingHandler = Callable[[IncomingCall], Awaitable[None]]


class TransferOffer(Protocol):
    """The far end asked us (SIP REFER) to call `target` in place of `call`."""

    call: Call  # the call being transferred
    target: str  # sip: URI to call
    referred_by: str | None

    async def accept(self, *, ring_timeout_s: float = 30.0) -> Call:
        """Call the target; once it answers, `call` ends as TRANSFERRED and the new
        call is returned. Raises CallFailed when the target does not answer (the
        original call goes on)."""
        ...

    async def decline(self) -> None:
        """Refuse the transfer; the original call goes on."""
        ...


# Decides on each transfer request; declined when it neither accepts nor declines.
TransferHandler = Callable[[TransferOffer], Awaitable[None]]


class Endpoint(Protocol):
    """A running telephony endpoint (a SIP UA, a WebSocket server...)."""

    async def start(self, on_incoming: IncomingHandler) -> None: ...

    async def place_call(self, uri: str, *, ring_timeout_s: float = 30.0) -> Call:
        """Dial; raises CallFailed(end_reason) when not answered."""
        ...

    async def stop(self) -> None: ...


class CallFailed(Exception):
    def __init__(self, reason: EndReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail
