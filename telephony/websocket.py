"""WebSocket media transport: the same Call interface without SIP, for the
browser console, load tests and anyone without a SIP stack.

Protocol (one call per connection):
- binary messages: 16-bit little-endian PCM, mono, 8 kHz, any length (both ways;
  we send 20 ms frames, paced on the media clock);
- text messages: JSON objects with a "type":
  caller -> callee: {"type": "start", "caller": URI, "callee": URI, "headers": {}}
  callee -> caller: {"type": "answered", "call_id": ID} | {"type": "rejected",
    "code": 486, "reason": "..."}
  either way: {"type": "dtmf", "digit": "5", "duration_ms": 160},
    {"type": "hangup"}, {"type": "error", "message": "..."} (bad input; the call goes on).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, WebSocketException

from telephony.clock import MediaClock
from telephony.dtmf import DtmfError, check_digits
from telephony.interface import (
    FRAME_BYTES,
    CallFailed,
    CallInfo,
    DtmfEvent,
    EndReason,
    IncomingHandler,
)

log = logging.getLogger(__name__)

SILENCE = bytes(FRAME_BYTES)
MAX_MESSAGE_BYTES = 64 * 1024
_RX_MAX_BYTES = 8000 * 2 * 2  # 2 s of caller audio buffered at most


class WsCall:
    """One call over one WebSocket connection (either side)."""

    def __init__(self, ws: Any, info: CallInfo, clock: MediaClock) -> None:
        self.info = info
        self._ws = ws
        self._clock = clock
        self._rx = bytearray()
        self._out = bytearray()
        self._drained = asyncio.Event()
        self._drained.set()
        # Start of the current burst of queued audio on the socket (Call.audio_out_started_at)
        self._audio_out_started_at: float | None = None
        self._bursting = False  # the last tick sent queued audio: no new burst yet
        self._audio_in: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=50)
        self._dtmf_in: asyncio.Queue[DtmfEvent | None] = asyncio.Queue(maxsize=64)
        self._end_reason: EndReason | None = None
        self._ended = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self.errors_sent = 0

    def start(self) -> None:
        self._clock.add(self, self._send_tick, self._receive_tick)
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @property
    def end_reason(self) -> EndReason | None:
        return self._end_reason

    @property
    def audio_out_started_at(self) -> float | None:
        """When the first frame of the latest burst of queued audio was sent."""
        return self._audio_out_started_at

    async def audio_in(self) -> AsyncIterator[bytes]:
        while (frame := await self._audio_in.get()) is not None:
            yield frame

    async def dtmf_in(self) -> AsyncIterator[DtmfEvent]:
        while (event := await self._dtmf_in.get()) is not None:
            yield event

    async def write(self, pcm: bytes) -> None:
        if len(pcm) % 2:
            raise ValueError("16-bit PCM must have an even number of bytes")
        if self._end_reason is None and pcm:
            self._out += pcm
            self._drained.clear()

    def flush(self) -> int:
        dropped = len(self._out) // 2
        self._out.clear()
        self._bursting = False
        self._drained.set()
        return dropped

    async def drain(self) -> None:
        await self._drained.wait()

    async def send_dtmf(self, digits: str) -> None:
        for digit in check_digits(digits):
            await self._send_json({"type": "dtmf", "digit": digit, "duration_ms": 160})

    async def hangup(self) -> None:
        if self._end_reason is None:
            with contextlib.suppress(ConnectionClosed):
                await self._send_json({"type": "hangup"})
            await self._end(EndReason.LOCAL_HANGUP)

    async def transfer(self, target_uri: str, *, timeout_s: float = 30.0) -> bool:
        # the protocol has no way to hand a connection on: the call goes on unchanged
        log.warning("call %s: WebSocket calls cannot be transferred (to %s)", self.info.call_id,
                    target_uri)  # fmt: skip
        return False

    async def wait_ended(self) -> EndReason:
        await self._ended.wait()
        assert self._end_reason is not None
        return self._end_reason

    # ---- internals ----

    async def _send_json(self, message: dict[str, Any]) -> None:
        await self._ws.send(json.dumps(message))

    async def _error(self, message: str) -> None:
        self.errors_sent += 1
        with contextlib.suppress(ConnectionClosed):
            await self._send_json({"type": "error", "message": message})

    async def _read(self) -> None:
        reason = EndReason.TRANSPORT_CLOSED
        try:
            async for message in self._ws:
                if isinstance(message, bytes):
                    if len(message) % 2:
                        await self._error("audio must be 16-bit PCM: odd byte count")
                        continue
                    self._rx += message
                    if len(self._rx) > _RX_MAX_BYTES:  # a sender faster than real time
                        del self._rx[: len(self._rx) - _RX_MAX_BYTES]
                    continue
                if await self._on_control(message):
                    reason = EndReason.REMOTE_HANGUP
                    break
        except (ConnectionClosed, WebSocketException):
            pass
        await self._end(reason)

    async def _on_control(self, text: str) -> bool:
        """Handle one JSON message; True when the peer hung up."""
        try:
            message = json.loads(text)
            kind = message["type"]
        except (ValueError, KeyError, TypeError):
            await self._error("control messages are JSON objects with a 'type'")
            return False
        if kind == "hangup":
            return True
        if kind == "dtmf":
            try:
                (digit,) = check_digits(str(message.get("digit", "")))
                duration = int(message.get("duration_ms", 0))
            except (DtmfError, ValueError, TypeError):
                await self._error("dtmf needs one 'digit' of 0-9 * # A-D")
                return False
            _put_dropping_oldest(self._dtmf_in, DtmfEvent(digit, duration))
            return False
        await self._error(f"unknown message type {kind!r}")
        return False

    def _receive_tick(self) -> None:
        if self._rx:
            frame = bytes(self._rx[:FRAME_BYTES]).ljust(FRAME_BYTES, b"\0")
            del self._rx[:FRAME_BYTES]
        else:
            frame = SILENCE
        _put_dropping_oldest(self._audio_in, frame)

    def _send_tick(self) -> None:
        if not self._out:
            self._bursting = False  # a tick with nothing queued ends the burst
            return
        out = bytes(self._out[:FRAME_BYTES]).ljust(FRAME_BYTES, b"\0")
        del self._out[:FRAME_BYTES]
        if not self._out:
            self._drained.set()
        first_of_burst = not self._bursting
        self._bursting = True
        asyncio.get_running_loop().create_task(self._send_frame(out, first_of_burst))

    async def _send_frame(self, frame: bytes, first_of_burst: bool = False) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(frame)
            if first_of_burst:  # once the frame is on the socket, not when it was queued
                self._audio_out_started_at = time.monotonic()

    async def _end(self, reason: EndReason) -> None:
        if self._end_reason is not None:
            return
        self._end_reason = reason
        self._clock.remove(self)
        self._out.clear()
        self._drained.set()
        _put_dropping_oldest(self._audio_in, None)
        _put_dropping_oldest(self._dtmf_in, None)
        self._ended.set()
        with contextlib.suppress(ConnectionClosed, WebSocketException):
            await self._ws.close()
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()


class _IncomingWsCall:
    def __init__(self, endpoint: WebSocketEndpoint, ws: ServerConnection, info: CallInfo):
        self.info = info
        self._endpoint = endpoint
        self._ws = ws
        self.decided = asyncio.Event()
        self.call: WsCall | None = None

    async def answer(self) -> WsCall:
        if self.decided.is_set():
            raise CallFailed(EndReason.FAILED, "call already answered or rejected")
        call = WsCall(self._ws, self.info, self._endpoint.clock)
        try:
            await call._send_json({"type": "answered", "call_id": self.info.call_id})
        except ConnectionClosed as exc:
            raise CallFailed(EndReason.CANCELLED, "caller went away before answer") from exc
        call.start()
        self.call = call
        self.decided.set()
        return call

    async def reject(self, code: int = 486, reason: str = "Busy Here") -> None:
        if self.decided.is_set():
            return
        self.decided.set()
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(json.dumps({"type": "rejected", "code": code, "reason": reason}))
            await self._ws.close()


class WebSocketEndpoint:
    """Serves ws://host:port/ calls and places calls to other such servers."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8765) -> None:
        self.host = host
        self.port = port
        self.clock = MediaClock()
        self._server: Server | None = None
        self._on_incoming: IncomingHandler | None = None

    async def start(self, on_incoming: IncomingHandler) -> None:
        self._on_incoming = on_incoming
        self._server = await serve(self._serve, self.host, self.port, max_size=MAX_MESSAGE_BYTES)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self.clock.stop()

    async def _serve(self, ws: ServerConnection) -> None:
        try:
            first = await asyncio.wait_for(ws.recv(), 10)
            start = json.loads(first) if isinstance(first, str) else None
            if not isinstance(start, dict) or start.get("type") != "start":
                raise ValueError('the first message must be {"type": "start", ...}')
            headers = start.get("headers") or {}
            if not isinstance(headers, dict):
                raise ValueError("'headers' must be an object")
            info = CallInfo(
                call_id=str(start.get("call_id") or uuid.uuid4().hex),
                direction="inbound",
                caller=str(start.get("caller", "")),
                callee=str(start.get("callee", "")),
                headers={str(k): str(v) for k, v in headers.items()},
            )
        except (TimeoutError, ValueError, ConnectionClosed) as exc:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(json.dumps({"type": "error", "message": str(exc)}))
            return
        incoming = _IncomingWsCall(self, ws, info)
        if self._on_incoming is not None:
            await self._on_incoming(incoming)
        if not incoming.decided.is_set():
            await incoming.reject(480, "Temporarily Unavailable")
            return
        if incoming.call is not None:
            await incoming.call.wait_ended()  # the connection lives as long as the call

    async def place_call(self, uri: str, *, ring_timeout_s: float = 30.0) -> WsCall:
        """Dial ws://host:port/...; raises CallFailed when not answered in time."""
        try:
            ws = await asyncio.wait_for(connect(uri, max_size=MAX_MESSAGE_BYTES), ring_timeout_s)
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise CallFailed(EndReason.FAILED, f"cannot reach {uri}: {exc}") from exc
        call_id = uuid.uuid4().hex
        start = {"type": "start", "call_id": call_id, "caller": "trunkline", "callee": uri}
        try:
            await ws.send(json.dumps(start))
            reply = json.loads(await asyncio.wait_for(ws.recv(), ring_timeout_s))
        except TimeoutError as exc:
            await ws.close()
            raise CallFailed(EndReason.NO_ANSWER, f"no answer in {ring_timeout_s} s") from exc
        except (ConnectionClosed, ValueError) as exc:
            raise CallFailed(EndReason.FAILED, f"{uri} closed the call: {exc}") from exc
        if reply.get("type") == "rejected":
            await ws.close()
            code = int(reply.get("code", 486))
            reason = EndReason.BUSY if code in (486, 600) else EndReason.REJECTED
            raise CallFailed(reason, f"{code} {reply.get('reason', '')}")
        if reply.get("type") != "answered":
            await ws.close()
            raise CallFailed(EndReason.FAILED, f"unexpected answer {reply!r}")
        info = CallInfo(call_id=call_id, direction="outbound", caller="trunkline", callee=uri)
        call = WsCall(ws, info, self.clock)
        call.start()
        return call


def _put_dropping_oldest(queue: asyncio.Queue, item: object) -> None:
    while True:
        try:
            queue.put_nowait(item)
            return
        except asyncio.QueueFull:
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()
