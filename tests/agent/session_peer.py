"""The caller's side of a session test: a plain WebSocket client (what the browser
console does) that dials the agent, plays espeak-ng speech through a mu-law phone
line at real time, and timestamps every agent audio message as it arrives on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from telephony.interface import FRAME_BYTES, SAMPLE_RATE
from tests.speech import phone_roundtrip, speak

VOICED_RMS = 300.0  # int16 RMS above which a received frame counts as agent speech
MAX_SAY_S = 30.0  # longest caller utterance a test may queue


def caller_speech(text: str) -> np.ndarray:
    """`text` as a caller on a phone line says it: 8 kHz int16 after G.711 mu-law."""
    pcm, rate = speak(text, rate=SAMPLE_RATE)
    pcm, _ = phone_roundtrip(pcm, rate)
    return pcm.astype(np.int16)


def speech_onset_s(pcm: np.ndarray, level: int = 1000) -> float:
    """Seconds of leading silence before the voice starts (espeak pads its output)."""
    loud = np.flatnonzero(np.abs(pcm) > level)
    return float(loud[0]) / SAMPLE_RATE if loud.size else 0.0


class Caller:
    def __init__(self, url: str) -> None:
        self.url = url
        self.frames: list[tuple[float, np.ndarray]] = []  # (arrival monotonic, pcm)
        self.controls: list[dict] = []
        self.ended = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._outgoing = bytearray()
        self._tasks: list[asyncio.Task[None]] = []

    async def dial(self, timeout_s: float = 60.0) -> None:
        self._ws = await connect(self.url)
        await self._ws.send(json.dumps({"type": "start", "caller": "test", "callee": "agent"}))
        reply = json.loads(await asyncio.wait_for(self._ws.recv(), timeout_s))
        assert reply["type"] == "answered", reply
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._send())]

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for message in self._ws:
                if isinstance(message, bytes):
                    pcm = np.frombuffer(message, dtype="<i2").copy()
                    self.frames.append((time.monotonic(), pcm))
                    continue
                control = json.loads(message)
                self.controls.append(control)
                if control.get("type") == "hangup":
                    break
        except ConnectionClosed:
            pass
        finally:
            self.ended.set()

    async def _send(self) -> None:
        # Deadline pacing, 20 ms a frame, like a phone; nothing is sent while quiet
        # (the transport fills the gaps with silence).
        assert self._ws is not None
        next_at = time.monotonic()
        while not self.ended.is_set():
            next_at = max(next_at + 0.02, time.monotonic() - 0.02)
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if self._outgoing:
                frame = bytes(self._outgoing[:FRAME_BYTES])
                del self._outgoing[:FRAME_BYTES]
                with contextlib.suppress(ConnectionClosed):
                    await self._ws.send(frame)

    async def say(self, pcm: np.ndarray) -> tuple[float, float]:
        """Queue speech; returns when it starts and ends going out (monotonic)."""
        assert pcm.size <= MAX_SAY_S * SAMPLE_RATE
        start = time.monotonic() + len(self._outgoing) / 2 / SAMPLE_RATE
        self._outgoing += pcm.astype("<i2").tobytes()
        return start, start + pcm.size / SAMPLE_RATE

    def voiced_times(self, since: float = 0.0) -> list[float]:
        return [t for t, f in self.frames if t >= since and _rms(f) > VOICED_RMS]

    def audio(self, since: float = 0.0, until: float = float("inf")) -> np.ndarray:
        parts = [f for t, f in self.frames if since <= t < until]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    async def wait_voice(self, since: float, timeout_s: float) -> float:
        """Arrival time of the first voiced agent frame after `since`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            times = self.voiced_times(since)
            if times:
                return times[0]
            await asyncio.sleep(0.02)
        raise AssertionError(f"no agent audio within {timeout_s} s")

    async def wait_quiet(self, quiet_s: float, timeout_s: float) -> None:
        """Until no voiced agent audio arrived for `quiet_s` (the agent finished a line)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            times = self.voiced_times()
            if times and time.monotonic() - times[-1] >= quiet_s:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"the agent did not go quiet within {timeout_s} s")

    async def wait_ended(self, timeout_s: float) -> None:
        await asyncio.wait_for(self.ended.wait(), timeout_s)

    async def hangup(self) -> None:
        if self._ws is not None and not self.ended.is_set():
            with contextlib.suppress(ConnectionClosed):
                await self._ws.send(json.dumps({"type": "hangup"}))

    async def close(self) -> None:
        await self.hangup()
        if self._ws is not None:
            await self._ws.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _rms(frame: np.ndarray) -> float:
    return float(np.sqrt(np.mean(frame.astype(np.float64) ** 2))) if frame.size else 0.0
