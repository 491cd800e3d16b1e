"""AgentServer: answers SIP calls, runs one CallSession per call, persists every record.

    server = AgentServer(engines, settings, store=CallRecordStore())
    await server.start()        # warm models + pre-synthesized lines, then listen for SIP
    ...
    await server.stop()         # hang up every call, wait for their records, close the store

Engines are engine-shaped objects (in-process engines, or serving.client's Ray/HTTP
clients): the server does not care which.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from agent.app.record_sink import StoreSink
from agent.app.settings import AgentSettings
from agent.metrics import METRICS, CallMetrics
from agent.session import CallRecord, CallSession, Engines, prepare_session
from telephony.interface import CallFailed, IncomingCall
from telephony.sip_endpoint import SipConfig, SipEndpoint

log = logging.getLogger(__name__)

STOP_GRACE_S = 15.0  # longest wait for ended calls to hand over their records


class AgentServer:
    def __init__(
        self,
        engines: Engines | Sequence[Any],
        settings: AgentSettings,
        *,
        store: Any,
        metrics: CallMetrics = METRICS,
    ) -> None:
        self.engines = Engines(*engines)
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.sink = StoreSink(store, metrics)
        self.endpoint = SipEndpoint(
            SipConfig(
                bind=settings.sip.bind,
                rtp_ports=settings.sip.rtp_ports,
                media_timeout_s=settings.sip.media_timeout_s,
                user="agent",
            )
        )
        self.sessions: dict[str, CallSession] = {}  # live calls, by SIP Call-ID
        self.ready = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

    @property
    def sip_address(self) -> tuple[str, int]:
        return self.endpoint.local_address

    @property
    def sip_uri(self) -> str:
        host, port = self.sip_address
        return f"sip:agent@{host}:{port}"

    async def start(self) -> None:
        """Warm up (so the first caller waits for nothing), then take calls."""
        await self.store.start()
        await prepare_session(self.engines, self.settings.session)
        await self.endpoint.start(self._on_incoming)
        self.ready.set()

    async def stop(self) -> None:
        """Hang up every call and wait until each has handed over its record."""
        self._stopping = True
        self.ready.clear()
        for session in list(self.sessions.values()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.call.hangup(), 5.0)
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=STOP_GRACE_S)
            for task in pending:  # a session stuck past the grace: cancelled, still recorded
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        await self.endpoint.stop()
        await self.store.close()

    async def _on_incoming(self, incoming: IncomingCall) -> None:
        # The endpoint rejects a call whose handler returns unanswered: answer here,
        # then run the session in a task of ours (stop() waits for it).
        call_id = incoming.info.call_id
        if self._stopping:
            await incoming.reject(503, "Service Unavailable")
            return
        options = self.settings.session
        try:
            prepared = await prepare_session(self.engines, options)  # cached lines, warm prefix
        except Exception as exc:
            log.exception("call %s: cannot prepare a session", call_id)
            await incoming.reject(503, f"Service Unavailable ({type(exc).__name__})")
            return
        try:
            call = await incoming.answer()
        except CallFailed as exc:
            log.info("call %s not answered: %s", call_id, exc)
            return
        session = CallSession(call, self.engines, options, prepared=prepared, record_sink=self.sink)
        log.info("call %s from %s answered", call_id, incoming.info.caller)
        self.run_session(session)

    def run_session(self, session: CallSession) -> asyncio.Task[CallRecord]:
        """Run an answered or placed call's session in a task the server tracks: it is
        listed as live, persisted through the sink, and hung up and awaited by stop()."""
        call_id = session.call.info.call_id
        self.sessions[call_id] = session
        task = asyncio.get_running_loop().create_task(
            self._run_call(session), name=f"call-{call_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run_call(self, session: CallSession) -> CallRecord:
        call_id = session.call.info.call_id
        try:
            await self.sink.on_call_start(session.record)
            record = await session.run()
        finally:
            self.sessions.pop(call_id, None)
        log.info("call %s ended: %s (%s)", call_id, record.end_reason, record.outcome)
        return record
