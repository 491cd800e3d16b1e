"""The agent's outgoing audio: writes to the call and knows what was actually played.

Every sample written is counted; at barge-in `Call.flush()` says how many queued
samples were dropped, so written minus dropped is exactly what went out (the frame
on the wire when the flush came is counted as heard).

Barge-in in two steps (agent/session/barge_in.py): `pause()` at the caller's first
voice takes the queued audio off the wire but keeps it; `flush()` once the voice is
confirmed as speech drops it, `resume()` after a blip sends it again from where it
stopped. Stream positions do not move on a pause, so sentence offsets stay valid.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import numpy as np

from agent.session.barge_in import SpokenSegment
from telephony.interface import SAMPLE_RATE, Call

# Audio handed to the call is kept this long after it should have played, so a pause
# can take back what was still queued (the clock estimate may run a little early).
KEEP_PLAYED_S = 2.0


class Playout:
    def __init__(self, call: Call) -> None:
        self.call = call
        self.position = 0  # samples written and not flushed: the outgoing stream's end
        self._busy_until = 0.0  # monotonic estimate of when queued audio finishes playing
        self._sent: deque[tuple[int, np.ndarray]] = deque()  # (stream offset, pcm) handed over
        self._paused_at: int | None = None  # stream position where a pause stopped playback
        self._held: list[np.ndarray] = []  # audio taken back or written while paused
        self._auto_resume: asyncio.TimerHandle | None = None
        self._resumer: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()  # keeps resumed and new audio in order

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    @property
    def playing(self) -> bool:
        """Agent audio is (by the clock estimate) still going out, or paused mid-way."""
        return self.paused or time.monotonic() < self._busy_until

    @property
    def remaining_s(self) -> float:
        held = sum(p.size for p in self._held) / SAMPLE_RATE
        return max(0.0, self._busy_until - time.monotonic()) + held

    async def write(self, pcm: np.ndarray, segment: SpokenSegment | None = None) -> float:
        """Queue 8 kHz int16 audio; extends `segment` to cover it. Returns the write time."""
        pcm = np.ascontiguousarray(pcm, dtype=np.int16)
        now = time.monotonic()
        if pcm.size == 0:
            return now
        async with self._write_lock:
            if not self.paused:
                await self.call.write(pcm.tobytes())
                if self.paused:
                    # Paused while the transport made room: what was just queued must
                    # not play either (pause flushed everything before it).
                    self.call.flush()
                    self._held.append(pcm)
                else:
                    self._sent.append((self.position, pcm))
                    self._busy_until = max(self._busy_until, now) + pcm.size / SAMPLE_RATE
            else:
                self._held.append(pcm)
            self.position += pcm.size
            self._forget_played(now)
        if segment is not None:
            segment.end = self.position
        return now

    def pause(self, max_s: float) -> bool:
        """Take queued audio off the wire, keeping it; resumes by itself after `max_s`.
        False (nothing done) when no agent audio is going out."""
        if self.paused or time.monotonic() >= self._busy_until:
            return False
        dropped = self.call.flush()
        played_to = max(0, self.position - dropped)
        self._held = [self._taken_back(played_to)]
        self._paused_at = played_to
        self._busy_until = time.monotonic()
        self._auto_resume = asyncio.get_running_loop().call_later(max_s, self._resume_soon)
        return True

    async def resume(self) -> None:
        """Send the audio held by a pause again, from where playback stopped."""
        if not self.paused:
            return
        self._cancel_auto_resume()
        async with self._write_lock:
            if self._paused_at is None:
                return  # flushed meanwhile
            start, held = self._paused_at, self._held
            self._paused_at, self._held = None, []
            pcm = np.concatenate(held) if held else np.zeros(0, np.int16)
            if pcm.size:
                now = time.monotonic()
                self._sent.append((start, pcm))
                self._busy_until = now + pcm.size / SAMPLE_RATE
                await self.call.write(pcm.tobytes())

    def flush(self) -> int:
        """Drop everything queued or held at once; returns the stream position played."""
        dropped = self.call.flush()
        if self._paused_at is not None:
            self.position = self._paused_at
            self._paused_at, self._held = None, []
            self._cancel_auto_resume()
        else:
            self.position = max(0, self.position - dropped)
        self._sent.clear()
        self._busy_until = time.monotonic()
        return self.position

    # ------------------------------------------------------------ internals

    def _taken_back(self, played_to: int) -> np.ndarray:
        """Samples [played_to, position) from what was handed to the call."""
        parts = []
        for start, pcm in self._sent:
            end = start + pcm.size
            if end > played_to:
                parts.append(pcm[max(0, played_to - start) :])
        self._sent.clear()
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)

    def _forget_played(self, now: float) -> None:
        queued = round(max(0.0, self._busy_until - now + KEEP_PLAYED_S) * SAMPLE_RATE)
        keep_from = self.position - queued
        while self._sent and self._sent[0][0] + self._sent[0][1].size < keep_from:
            self._sent.popleft()

    def _resume_soon(self) -> None:
        self._auto_resume = None
        self._resumer = asyncio.get_running_loop().create_task(self.resume())

    def _cancel_auto_resume(self) -> None:
        if self._auto_resume is not None:
            self._auto_resume.cancel()
            self._auto_resume = None
