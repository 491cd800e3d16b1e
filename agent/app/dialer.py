"""The caller's side of `trunkline call`: dial over real SIP, talk turn by turn, record.

    result = await talk(uri, utterances, DialOptions(...))

It waits for the greeting to finish, then plays each utterance and waits for the
agent's reply (agent audio started, then `quiet_s` of silence), timing each turn on
the wire: end of the caller's audio sent -> first voiced agent audio received.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import numpy as np

from agent.app.utterances import trailing_silence_s
from telephony.interface import SAMPLE_RATE, Call, CallFailed, EndReason, IncomingCall
from telephony.sip_endpoint import SipConfig, SipEndpoint

VOICED_RMS = 300.0  # int16 RMS of a 20 ms frame above which it is agent speech


class DialError(Exception):
    """The call could not be made (no answer, refused, failed)."""


@dataclass(frozen=True)
class DialOptions:
    bind: tuple[str, int] = ("127.0.0.1", 0)
    rtp_ports: tuple[int, int] = (20000, 30000)
    ring_timeout_s: float = 15.0
    reply_timeout_s: float = 30.0  # longest wait for each reply (and for the greeting)
    quiet_s: float = 1.2  # silence after agent speech that ends its reply
    greeting: bool = True  # wait for a greeting before speaking


@dataclass
class ClientTurn:
    sent_at: float  # monotonic, caller audio started going out
    sent_end: float  # monotonic, the last of it went out
    reply_start: float | None = None  # first voiced agent frame received
    reply_end: float | None = None

    @property
    def turn_latency_ms(self) -> float | None:
        if self.reply_start is None:
            return None
        return round((self.reply_start - self.sent_end) * 1000.0, 1)


@dataclass
class DialResult:
    call_id: str
    turns: list[ClientTurn]
    received: np.ndarray  # everything the agent sent, 8 kHz int16, from answer to hang-up
    end_reason: str | None
    greeting_s: float | None = None  # how long the greeting lasted, if there was one


@dataclass
class AgentListener:
    """Collects what the agent sends, with arrival times, and answers "has it spoken"."""

    call: Call
    frames: list[tuple[float, np.ndarray]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for frame in self.call.audio_in():
            self.frames.append((time.monotonic(), np.frombuffer(frame, dtype="<i2").copy()))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def voiced_times(self, since: float = 0.0) -> list[float]:
        return [t for t, f in self.frames if t >= since and _rms(f) > VOICED_RMS]

    def audio(self, since: float = 0.0, until: float = float("inf")) -> np.ndarray:
        parts = [f for t, f in self.frames if since <= t < until]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    async def wait_voice(self, since: float, timeout_s: float) -> float | None:
        """Arrival of the first voiced frame after `since`, or None by the timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.call.end_reason is None:
            times = self.voiced_times(since)
            if times:
                return times[0]
            await asyncio.sleep(0.02)
        return None

    async def wait_quiet(self, since: float, quiet_s: float, timeout_s: float) -> float:
        """Wait until no voiced frame for `quiet_s`; returns the last voiced arrival."""
        deadline = time.monotonic() + timeout_s
        last = since
        while time.monotonic() < deadline and self.call.end_reason is None:
            times = self.voiced_times(since)
            if times:
                last = times[-1]
            if time.monotonic() - last >= quiet_s:
                break
            await asyncio.sleep(0.02)
        return last


def _rms(frame: np.ndarray) -> float:
    return float(np.sqrt(np.mean(frame.astype(np.float64) ** 2))) if frame.size else 0.0


async def _refuse(incoming: IncomingCall) -> None:
    await incoming.reject(486, "Busy Here")  # a caller, not a phone


async def dial(uri: str, options: DialOptions) -> tuple[SipEndpoint, Call]:
    endpoint = SipEndpoint(SipConfig(bind=options.bind, rtp_ports=options.rtp_ports, user="caller"))
    await endpoint.start(_refuse)
    try:
        call = await endpoint.place_call(uri, ring_timeout_s=options.ring_timeout_s)
    except CallFailed as exc:
        await endpoint.stop()
        if exc.reason is EndReason.NO_ANSWER:
            raise DialError(f"no answer from {uri} within {options.ring_timeout_s:g} s") from None
        raise DialError(f"call to {uri} failed: {exc}") from None
    except (TimeoutError, OSError) as exc:
        await endpoint.stop()
        raise DialError(f"call to {uri} failed: {type(exc).__name__}: {exc}") from None
    return endpoint, call


async def play(call: Call, pcm: np.ndarray) -> tuple[float, float]:
    """Send `pcm` at real time; (start, end) monotonic of it going out."""
    await call.drain()
    started = time.monotonic()
    await call.write(pcm.astype("<i2").tobytes())
    await call.drain()
    return started, time.monotonic()


async def talk(uri: str, utterances: list[np.ndarray], options: DialOptions) -> DialResult:
    endpoint, call = await dial(uri, options)
    listener = AgentListener(call)
    listener.start()
    answered = time.monotonic()
    turns: list[ClientTurn] = []
    greeting_s = None
    try:
        if options.greeting:
            heard = await listener.wait_voice(answered, options.reply_timeout_s)
            if heard is not None:
                end = await listener.wait_quiet(heard, options.quiet_s, options.reply_timeout_s)
                greeting_s = round(end - heard, 2)
        for pcm in utterances:
            if call.end_reason is not None:
                break
            sent_at, drained = await play(call, pcm)
            # the turn's clock starts at the end of the voice, not of its trailing padding
            turn = ClientTurn(sent_at, drained - trailing_silence_s(pcm))
            turns.append(turn)
            turn.reply_start = await listener.wait_voice(drained, options.reply_timeout_s)
            if turn.reply_start is not None:
                turn.reply_end = await listener.wait_quiet(
                    turn.reply_start, options.quiet_s, options.reply_timeout_s
                )
        end_reason = call.end_reason
        await call.hangup()
    finally:
        await listener.stop()
        await endpoint.stop()
    reason = end_reason or call.end_reason
    return DialResult(
        call_id=call.info.call_id,
        turns=turns,
        received=listener.audio(answered),
        end_reason=reason.value if reason is not None else None,
        greeting_s=greeting_s,
    )


def seconds(pcm: np.ndarray) -> float:
    return pcm.size / SAMPLE_RATE
