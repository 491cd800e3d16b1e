"""Deadline pacing on the monotonic clock.

Frame n is due at start + n * interval, computed from the start, never from
the previous send, so scheduling delays do not accumulate into drift. One
clock drives every call of an endpoint: one timer per 20 ms instead of one per
call, and all calls stay aligned.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

FRAME_INTERVAL_S = 0.020


@dataclass
class PacingStats:
    ticks: int = 0
    resyncs: int = 0  # the loop was stalled past max_lag_s: skipped ahead
    lateness_s: list[float] = field(default_factory=list)  # last N tick lateness values

    def record(self, lateness: float, keep: int) -> None:
        self.lateness_s.append(lateness)
        if len(self.lateness_s) > keep:
            del self.lateness_s[: len(self.lateness_s) - keep]


class Pacer:
    """Waits for successive deadlines start + n * interval."""

    def __init__(self, interval_s: float = FRAME_INTERVAL_S, max_lag_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.max_lag_s = max_lag_s
        self.start = time.monotonic()
        self.n = 0
        self.stats = PacingStats()

    def deadline(self) -> float:
        return self.start + self.n * self.interval_s

    async def wait(self) -> float:
        """Sleep until the next deadline; returns how late we woke (seconds)."""
        self.n += 1
        target = self.deadline()
        delay = target - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        lateness = time.monotonic() - target
        if lateness > self.max_lag_s:
            # A stall this long cannot be caught up without a burst the peer
            # would drop anyway: skip the missed frames and keep the grid.
            missed = int(lateness // self.interval_s)
            self.n += missed
            self.stats.resyncs += 1
        self.stats.ticks += 1
        self.stats.record(lateness, keep=3000)
        return lateness


class MediaClock:
    """One pacing task calling every registered call each interval: first every
    call's `send` (so packets leave as close to the deadline as possible), then
    every call's `receive` (playout, which can wait a few hundred microseconds)."""

    def __init__(self, interval_s: float = FRAME_INTERVAL_S) -> None:
        self.pacer = Pacer(interval_s)
        self._callbacks: dict[object, tuple[Callable[[], None], Callable[[], None] | None]] = {}
        self._task: asyncio.Task[None] | None = None

    def add(
        self,
        owner: object,
        send: Callable[[], None],
        receive: Callable[[], None] | None = None,
    ) -> None:
        self._callbacks[owner] = (send, receive)
        if self._task is None or self._task.done():
            self.pacer = Pacer(self.pacer.interval_s)
            self._task = asyncio.get_running_loop().create_task(self._run())

    def remove(self, owner: object) -> None:
        self._callbacks.pop(owner, None)

    async def _run(self) -> None:
        while self._callbacks:
            await self.pacer.wait()
            calls = list(self._callbacks.values())
            for phase in (0, 1):
                for callbacks in calls:
                    callback = callbacks[phase]
                    if callback is None:
                        continue
                    try:
                        callback()
                    except Exception:  # one broken call must not stop the others' audio
                        log.exception("media tick failed")
        self._task = None

    async def stop(self) -> None:
        self._callbacks.clear()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
