"""Fixtures: an in-process SIP endpoint on loopback (ports 15000-15999 only)
whose calls are handled by a scriptable `Answerer`."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import numpy as np
import pytest

from telephony.interface import Call, CallFailed, DtmfEvent, EndReason, IncomingCall
from telephony.sip_endpoint import SipConfig, SipEndpoint
from tests.telephony.audio_checks import tone

SIP_PORT = 15060
RTP_PORTS = (15100, 15300)


@dataclass
class CallRecord:
    call: Call | None = None
    audio: list[bytes] = field(default_factory=list)
    dtmf: list[DtmfEvent] = field(default_factory=list)
    failure: CallFailed | None = None
    reason: EndReason | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def pcm(self) -> np.ndarray:
        return np.frombuffer(b"".join(self.audio), "<i2")


@dataclass
class Answerer:
    """What the endpoint does with each incoming call."""

    answer_delay_s: float = 0.0
    reject_code: int | None = None
    reply_tone_hz: float | None = 600.0
    reply_level_dbfs: float = -12.0
    records: list[CallRecord] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, incoming: IncomingCall) -> None:
        record = CallRecord()
        self.records.append(record)
        self.arrived.set()
        if self.reject_code:
            await incoming.reject(self.reject_code, "Rejected By Test")
            record.done.set()
            return
        await asyncio.sleep(self.answer_delay_s)
        try:
            call = await incoming.answer()
        except CallFailed as exc:
            record.failure = exc
            record.done.set()
            return
        assert isinstance(call, Call)  # the interface the agent codes against
        record.call = call
        asyncio.get_running_loop().create_task(self._run(call, record))

    async def _run(self, call: Call, record: CallRecord) -> None:
        async def listen() -> None:
            async for frame in call.audio_in():
                record.audio.append(frame)

        async def digits() -> None:
            async for event in call.dtmf_in():
                record.dtmf.append(event)

        tasks = [asyncio.create_task(listen()), asyncio.create_task(digits())]
        if self.reply_tone_hz:
            await call.write(tone(self.reply_tone_hz, 20.0, self.reply_level_dbfs).tobytes())
        record.reason = await call.wait_ended()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        record.done.set()

    async def wait_calls(self, count: int, timeout_s: float = 20.0) -> list[CallRecord]:
        async with asyncio.timeout(timeout_s):
            while len(self.records) < count:
                self.arrived.clear()
                await self.arrived.wait()
            for record in self.records[:count]:
                await record.done.wait()
        return self.records[:count]


@pytest.fixture
async def answerer() -> Answerer:
    return Answerer()


@pytest.fixture
async def endpoint(answerer: Answerer):
    ep = SipEndpoint(SipConfig(bind=("127.0.0.1", SIP_PORT), rtp_ports=RTP_PORTS))
    await ep.start(answerer)
    yield ep
    await ep.stop()
