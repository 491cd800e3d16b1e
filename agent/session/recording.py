"""RecordingCall: a telephony Call that also records both sides to a stereo WAV.

    call = RecordingCall(await incoming.answer(), recording_file(record_id))
    session = CallSession(call, ...)        # the session sees an ordinary Call
    ...
    await call.finish()                     # also done by itself when the call ends

Left channel: the caller; right: the agent; 8 kHz 16-bit, both on one clock (seconds
since the wrapper was made), so a barge-in shows as overlap. Audio is written to
`<file>.part` about once a second and renamed to `<file>` when the call ends, so
memory stays bounded whatever the call's length, and a present `.wav` is complete.

Where things land on the clock:
- caller frames are read as they arrive (our own reader, so the session reading late,
  e.g. during the greeting, does not shift them) and laid end to end; when frames
  were lost the next one is moved up to the present;
- agent audio starts when the audio queued before it ends, or now if nothing is
  queued; what `flush()` drops (barge-in) is cut from the recording too, since the
  caller never heard it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import time
import wave
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from models.paths import trunkline_home
from telephony.interface import SAMPLE_RATE, Call, DtmfEvent, EndReason

log = logging.getLogger(__name__)

RECORD_ENV = "TRUNKLINE_RECORD_CALLS"  # "0" / "false" / "off": no recordings
LAG_S = 0.5  # caller audio this far behind the clock is taken as lost and skipped
COMMIT_S = 1.0  # write to disk about this often
_IN_QUEUE_FRAMES = 50  # as the transports: 1 s of caller audio waits for the session
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")


def recordings_dir() -> Path:
    return trunkline_home() / "recordings"


def recording_file(record_id: str, directory: Path | None = None) -> Path:
    """Where the recording of the call with store key `record_id` lives.

    Call-IDs may hold characters no file name should ('/', '..'): those get a digest."""
    name = record_id
    if not _SAFE_NAME.fullmatch(name) or ".." in name:
        name = "sha256-" + hashlib.sha256(record_id.encode()).hexdigest()[:48]
    return (directory or recordings_dir()) / f"{name}.wav"


def recording_enabled(env: Mapping[str, str] | None = None) -> bool:
    value = (os.environ if env is None else env).get(RECORD_ENV, "1").strip().lower()
    return value not in ("0", "false", "no", "off")


def _put_dropping_oldest(queue: asyncio.Queue[bytes | None], item: bytes | None) -> None:
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(item)


class RecordingCall:
    """Wraps `call` (any telephony Call) and records it to `path`; same interface."""

    def __init__(
        self, call: Call, path: Path, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.info = call.info
        self.path = path
        self._call = call
        self._clock = clock
        self._t0 = clock()
        self._part = path.with_name(path.name + ".part")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._wav: wave.Wave_write | None = wave.open(str(self._part), "wb")
        self._wav.setnchannels(2)
        self._wav.setsampwidth(2)
        self._wav.setframerate(SAMPLE_RATE)
        # Samples before `_committed` are on disk; the buffers hold the rest, from there.
        self._committed = 0
        self._caller = bytearray()
        self._agent = bytearray()
        self._caller_end = 0  # sample just after the last caller frame
        self._agent_end = 0  # sample just after the last queued agent audio
        self._finished = False
        self._finishing: asyncio.Task[Path | None] | None = None
        self._in: asyncio.Queue[bytes | None] = asyncio.Queue(_IN_QUEUE_FRAMES)
        self._in_ended = False
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read_caller(), name=f"record-{call.info.call_id}")
        self._watcher = loop.create_task(self._finish_when_ended())

    # ------------------------------------------------------------ the Call interface

    async def audio_in(self) -> AsyncIterator[bytes]:
        while not self._in_ended:
            frame = await self._in.get()
            if frame is None:
                self._in_ended = True  # a later audio_in() ends at once too
                return
            yield frame

    def dtmf_in(self) -> AsyncIterator[DtmfEvent]:
        return self._call.dtmf_in()

    async def write(self, pcm: bytes) -> None:
        await self._call.write(pcm)
        if self._finished or not pcm:
            return
        start = max(self._agent_end, self._now())
        self._place(self._agent, start, pcm)
        self._agent_end = start + len(pcm) // 2
        self._maybe_commit()

    def flush(self) -> int:
        dropped = self._call.flush()
        if dropped and not self._finished:
            # The last `dropped` samples queued never reached the caller.
            self._agent_end = max(self._committed, self._agent_end - dropped)
            del self._agent[(self._agent_end - self._committed) * 2 :]
        return dropped

    async def drain(self) -> None:
        await self._call.drain()

    async def send_dtmf(self, digits: str) -> None:
        await self._call.send_dtmf(digits)

    async def hangup(self) -> None:
        await self._call.hangup()

    async def transfer(self, target_uri: str, *, timeout_s: float = 30.0) -> bool:
        transfer = getattr(self._call, "transfer", None)
        if transfer is None:  # a transport without transfer
            return False
        return bool(await transfer(target_uri, timeout_s=timeout_s))

    async def wait_ended(self) -> EndReason:
        return await self._call.wait_ended()

    @property
    def end_reason(self) -> EndReason | None:
        return self._call.end_reason

    @property
    def audio_out_started_at(self) -> float | None:
        return getattr(self._call, "audio_out_started_at", None)

    def __getattr__(self, name: str) -> Any:
        # Anything transport-specific (a SipCall's dialog, say) is the wrapped call's.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._call, name)

    # ------------------------------------------------------------ recording

    @property
    def finished(self) -> bool:
        return self._finished

    async def finish(self) -> Path | None:
        """Write what is left and move the file into place; the path, or None when the
        recording failed (logged). Idempotent; call it once the call has ended."""
        if self._finishing is None:
            self._finishing = asyncio.get_running_loop().create_task(self._finish())
        return await asyncio.shield(self._finishing)

    async def _finish(self) -> Path | None:
        self._finished = True
        self._watcher.cancel()  # shielded: a watcher already waiting here stops, this goes on
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        # Agent audio still queued when the line closed was never heard.
        end = max(self._caller_end, min(self._agent_end, self._now()))
        self._commit(end)
        if self._wav is None:
            return None
        wav, self._wav = self._wav, None
        try:
            await asyncio.to_thread(self._close_and_move, wav)
        except OSError as exc:
            log.warning("call %s: recording not saved: %s", self.info.call_id, exc)
            return None
        return self.path

    def _close_and_move(self, wav: wave.Wave_write) -> None:
        wav.close()  # writes the final sizes into the header
        os.replace(self._part, self.path)

    async def _finish_when_ended(self) -> None:
        await self._call.wait_ended()
        await self.finish()

    async def _read_caller(self) -> None:
        try:
            async for frame in self._call.audio_in():
                if not self._finished:
                    lag_limit = self._now() - round(LAG_S * SAMPLE_RATE)
                    start = max(self._caller_end, lag_limit, self._committed)
                    self._place(self._caller, start, frame)
                    self._caller_end = start + len(frame) // 2
                    self._maybe_commit()
                _put_dropping_oldest(self._in, frame)
        except Exception:  # the transport's own failure: the session sees the stream end
            log.exception("call %s: reading caller audio failed", self.info.call_id)
        finally:
            _put_dropping_oldest(self._in, None)

    def _now(self) -> int:
        return round((self._clock() - self._t0) * SAMPLE_RATE)

    def _place(self, buffer: bytearray, start: int, pcm: bytes) -> None:
        offset = (start - self._committed) * 2
        if offset > len(buffer):
            buffer.extend(bytes(offset - len(buffer)))
        buffer[offset : offset + len(pcm)] = pcm

    def _maybe_commit(self) -> None:
        now = self._now()
        # Final up to where the caller's audio has arrived, and never later than
        # LAG_S ago (caller audio that late is taken as lost), so it always advances.
        target = max(min(self._caller_end, now), now - round(LAG_S * SAMPLE_RATE))
        if target - self._committed >= COMMIT_S * SAMPLE_RATE:
            self._commit(target)

    def _commit(self, upto: int) -> None:
        count = upto - self._committed
        if count <= 0:
            return
        size = count * 2
        left = np.frombuffer(bytes(self._caller[:size]).ljust(size, b"\0"), "<i2")
        right = np.frombuffer(bytes(self._agent[:size]).ljust(size, b"\0"), "<i2")
        del self._caller[:size]
        del self._agent[:size]
        self._committed = upto
        if self._wav is None:
            return
        frames = np.empty((count, 2), "<i2")
        frames[:, 0], frames[:, 1] = left, right
        try:
            self._wav.writeframesraw(frames.tobytes())
        except OSError as exc:  # disk full, say: the call goes on, unrecorded
            log.warning("call %s: recording stopped: %s", self.info.call_id, exc)
            with contextlib.suppress(Exception):
                self._wav.close()
            self._wav = None
            with contextlib.suppress(OSError):
                self._part.unlink()


def start_recording(call: Call, record_id: str, *, enabled: bool | None = None) -> Call:
    """`call` wrapped in a RecordingCall, or `call` itself when recordings are off
    ($TRUNKLINE_RECORD_CALLS=0) or the recordings directory cannot be written."""
    if not (recording_enabled() if enabled is None else enabled):
        return call
    try:
        return RecordingCall(call, recording_file(record_id))
    except OSError as exc:
        log.warning("call %s: not recorded: %s", call.info.call_id, exc)
        return call
