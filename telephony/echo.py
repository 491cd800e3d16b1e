"""The echo extension: answers, plays the caller's audio straight back, and
answers each DTMF digit with that digit's tone. Checks a trunk end to end
before any model runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from telephony.dtmf import dtmf_tone
from telephony.interface import Call, CallFailed, IncomingCall

log = logging.getLogger(__name__)


async def echo_call(call: Call) -> None:
    async def echo_audio() -> None:
        async for frame in call.audio_in():
            await call.write(frame)

    async def answer_digits() -> None:
        async for event in call.dtmf_in():
            log.info("call %s: DTMF %s", call.info.call_id, event.digit)
            call.flush()  # the tone replaces whatever echo was queued
            await call.write(dtmf_tone(event.digit))

    tasks = [asyncio.create_task(echo_audio()), asyncio.create_task(answer_digits())]
    try:
        reason = await call.wait_ended()
        log.info("call %s ended: %s", call.info.call_id, reason)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def answer_and_echo(incoming: IncomingCall) -> None:
    log.info("call from %s to %s", incoming.info.caller, incoming.info.callee)
    try:
        call = await incoming.answer()
    except CallFailed as exc:
        log.info("call %s not answered: %s", incoming.info.call_id, exc)
        return
    # the handler must return for the endpoint to keep answering others fast
    asyncio.get_running_loop().create_task(echo_call(call))
