"""The agent's outgoing audio: writes to the call and knows what was actually played.

Every sample written is counted; at barge-in `Call.flush()` says how many queued
samples were dropped, so written minus dropped is exactly what went out (the frame
on the wire when the flush came is counted as heard).
"""

from __future__ import annotations

import time

import numpy as np

from agent.session.barge_in import SpokenSegment
from telephony.interface import SAMPLE_RATE, Call


class Playout:
    def __init__(self, call: Call) -> None:
        self.call = call
        self.position = 0  # samples written and not flushed: the outgoing stream's end
        self._busy_until = 0.0  # monotonic estimate of when queued audio finishes playing

    @property
    def playing(self) -> bool:
        """Agent audio is (by the clock estimate) still going out."""
        return time.monotonic() < self._busy_until

    @property
    def remaining_s(self) -> float:
        return max(0.0, self._busy_until - time.monotonic())

    async def write(self, pcm: np.ndarray, segment: SpokenSegment | None = None) -> float:
        """Queue 8 kHz int16 audio; extends `segment` to cover it. Returns the write time."""
        pcm = np.ascontiguousarray(pcm, dtype=np.int16)
        now = time.monotonic()
        if pcm.size == 0:
            return now
        await self.call.write(pcm.tobytes())
        self.position += pcm.size
        if segment is not None:
            segment.end = self.position
        self._busy_until = max(self._busy_until, now) + pcm.size / SAMPLE_RATE
        return now

    def flush(self) -> int:
        """Drop everything queued at once; returns the stream position actually played."""
        dropped = self.call.flush()
        self.position = max(0, self.position - dropped)
        self._busy_until = time.monotonic()
        return self.position
