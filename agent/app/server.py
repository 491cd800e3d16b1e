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
from collections.abc import Callable, Sequence
from typing import Any

from agent.app.agent_directory import AgentDirectory, slugify, uri_user
from agent.app.live_registry import LiveRegistry, LiveSink, live_registry_from_env
from agent.app.record_sink import StoreSink, record_id
from agent.app.settings import AgentSettings
from agent.metrics import METRICS, CallMetrics
from agent.session import CallRecord, CallSession, Engines, SessionEvent, prepare_session
from agent.session.director import DirectedSink
from agent.session.recording import RecordingCall, start_recording
from telephony.interface import Call, CallFailed, IncomingCall
from telephony.sip_endpoint import SipConfig, SipEndpoint

log = logging.getLogger(__name__)

STOP_GRACE_S = 15.0  # longest wait for ended calls to hand over their records
# Calls to sip:helpdesk@ / sip:printer@ are stores calling about a printer: the
# troubleshooting workflows run them (asking store and lane first).
INBOUND_WORKFLOW_SLUGS = frozenset({"helpdesk", "printer"})


class AgentServer:
    def __init__(
        self,
        engines: Engines | Sequence[Any],
        settings: AgentSettings,
        *,
        store: Any,
        metrics: CallMetrics = METRICS,
        control_plane: Any | None = None,
        live_registry: LiveRegistry | None = None,
    ) -> None:
        self.engines = Engines(*engines)
        self.settings = settings
        self.store = store
        self.metrics = metrics
        # Live calls of every replica (Redis when $REDIS_URL is set, else in-process).
        self.live = live_registry if live_registry is not None else live_registry_from_env()
        self.sink: Any = LiveSink(StoreSink(store, metrics), self.live)
        if control_plane is not None:  # goals of control-plane agents, judged after each call
            from agent.controlplane.goal_tracking import GoalTrackingSink, control_plane_goals

            self.sink = GoalTrackingSink(
                self.sink, control_plane_goals(control_plane), self.engines.llm, store=store
            )
        # Incoming calls to sip:<agent-slug>@ get that control-plane agent; else the default.
        self.directory = AgentDirectory(self.engines, settings.session, control_plane)
        self.endpoint = SipEndpoint(
            SipConfig(
                bind=settings.sip.bind,
                rtp_ports=settings.sip.rtp_ports,
                media_timeout_s=settings.sip.media_timeout_s,
                user="agent",
                advertise=settings.sip.advertise,
            )
        )
        self.sessions: dict[str, CallSession] = {}  # live calls, by SIP Call-ID
        # Makes a workflow director for an inbound printer call (set once stores are known).
        self.inbound_directors: Callable[[], Any] | None = None
        self.ready = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

    @property
    def sip_address(self) -> tuple[str, int]:
        return self.endpoint.local_address

    @property
    def sip_uri(self) -> str:
        # config.host: the advertised host (never 0.0.0.0, which no peer can call)
        return f"sip:agent@{self.endpoint.config.host}:{self.sip_address[1]}"

    async def start(self) -> None:
        """Warm up (so the first caller waits for nothing), then take calls."""
        await self.store.start()
        await self.live.start()
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
        close_sink = getattr(self.sink, "close", None)  # finish pending goal work first
        if close_sink is not None:
            await close_sink()
        await self.live.close()
        await self.store.close()

    async def _on_incoming(self, incoming: IncomingCall) -> None:
        # The endpoint rejects a call whose handler returns unanswered: answer here,
        # then run the session in a task of ours (stop() waits for it).
        call_id = incoming.info.call_id
        if self._stopping:
            await incoming.reject(503, "Service Unavailable")
            return
        dialled = slugify(uri_user(incoming.info.callee))
        inbound_workflow = self.inbound_directors is not None and dialled in INBOUND_WORKFLOW_SLUGS
        if inbound_workflow:  # Maya, led by the troubleshooting workflows
            choice = self.directory.default
        else:
            choice = await self.directory.choose(incoming.info.callee)  # the dialled agent
        options = choice.options
        try:
            prepared = await self.directory.prepare(choice)  # cached lines, warm prefix
        except Exception as exc:
            log.exception("call %s: cannot prepare a session", call_id)
            await incoming.reject(503, f"Service Unavailable ({type(exc).__name__})")
            return
        try:
            call = await incoming.answer()
        except CallFailed as exc:
            log.info("call %s not answered: %s", call_id, exc)
            return
        call = self.recorded(call)
        director = None
        if inbound_workflow and self.inbound_directors is not None:
            director = self.inbound_directors()  # a store calling about a printer
        sink = DirectedSink(director, self.sink) if director is not None else self.sink
        session = CallSession(
            call, self.engines, options, prepared=prepared, record_sink=sink, director=director
        )
        session.record.agent_id = str(choice.agent_id) if choice.agent_id is not None else None
        if choice.agent_id is not None:  # a control-plane agent: say which in the record
            session.record.events.append(SessionEvent("agent", 0.0, choice.describe()))
        log.info("call %s from %s answered as %s", call_id, incoming.info.caller, choice.slug)
        self.run_session(session)

    def recorded(self, call: Call) -> Call:
        """The call, recorded to $TRUNKLINE_HOME/recordings (unless $TRUNKLINE_RECORD_CALLS=0)."""
        return start_recording(call, record_id(call.info.call_id))

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
            if isinstance(session.call, RecordingCall):
                await session.call.finish()  # the WAV is in place once the task ends
        log.info("call %s ended: %s (%s)", call_id, record.end_reason, record.outcome)
        return record
