"""Outbound ticket calls: from a ticket to Maya on the phone with the store.

    caller = TicketCaller(settings.stores, server)       # server: a started AgentServer
    placed = await caller.call_ticket("T1")               # rings the store, then returns
    record = await placed.task                            # the call, run to its end

ticket API -> StoreMaster store (sip_uri) -> the ticket's workflow -> place the call ->
a CallSession directed by the workflow (WorkflowDirector), with the store tools bound to
that store and ticket -> `server.run_session`. Whatever happens after the ticket was
read, the ticket ends updated: resolved / escalated by the workflow, else in_progress
with a note of what was tried and why the call stopped (no answer included).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from agent.app.settings import StoreSettings
from agent.session import CallRecord, CallSession, SessionOptions, prepare_session
from agent.session.director import DirectedSink
from agent.tools.api_clients import StoreMasterClient, TicketClient
from agent.tools.errors import ApiError, ApiNotFound, StoreError, ToolError
from agent.tools.store_ssh import StoreSSH
from agent.tools.store_tools import CallContext, StoreTools
from agent.workflows import WorkflowRun, load_library, workflow_for_issue
from agent.workflows.call_director import WorkflowDirector
from agent.workflows.guard import GuardedClassifier
from agent.workflows.inbound import InboundPrinterDirector
from agent.workflows.llm_classifier import LLMClassifier
from agent.workflows.personality import AdaptivePersonality
from agent.workflows.phraser import LLMOffTopic, LLMPhraser, StylePhraser
from agent.workflows.schema import Workflow, WorkflowError
from telephony.interface import CallFailed, EndReason

log = logging.getLogger(__name__)

CLOSED_STATUSES = ("resolved", "escalated")


class OutboundError(Exception):
    """A ticket call could not be started; `status` is the HTTP status that says why."""

    status = 500


class TicketNotFound(OutboundError):
    status = 404


class TicketClosed(OutboundError):
    status = 409


class StoreSystemsUnavailable(OutboundError):
    status = 502


class CallNotAnswered(OutboundError):
    status = 504


class AgentNotReady(OutboundError):
    status = 503


@dataclass
class PlacedCall:
    call_id: str  # the SIP Call-ID: GET /api/calls/{call_id}
    ticket_id: str
    to: str
    workflow: str
    task: asyncio.Task[CallRecord]

    def view(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "ticket_id": self.ticket_id,
            "to": self.to,
            "workflow": self.workflow,
        }


def intro_line(agent_name: str, lane: int, store_name: str | None) -> str:
    where = f" at {store_name}" if store_name else ""
    return (
        f"Hi, this is {agent_name} from store support. I'm calling about the coupon "
        f"printer on lane {lane}{where}."
    )


class TicketCaller:
    """Places workflow-directed calls for tickets through an AgentServer."""

    def __init__(self, settings: StoreSettings, server: Any | None = None) -> None:
        self.settings = settings
        self.server = server  # set once the agent has started (serve wires it)
        self._library: dict[str, Workflow] | None = None
        self._storemaster: StoreMasterClient | None = None
        self._tickets: TicketClient | None = None
        self._ssh: StoreSSH | None = None
        self._active: dict[str, str] = {}  # ticket id -> SIP Call-ID of its live call
        self._calls: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------ clients

    def _clients(self) -> tuple[StoreMasterClient, TicketClient]:
        if self._storemaster is None or self._tickets is None:
            try:
                token = self.settings.api_token()
            except ApiError as exc:
                raise StoreSystemsUnavailable(str(exc)) from None
            self._storemaster = StoreMasterClient(self.settings.api_url, token)
            self._tickets = TicketClient(self.settings.tickets_base, token)
        return self._storemaster, self._tickets

    def _store_ssh(self) -> StoreSSH:
        if self._ssh is None:
            try:
                self._ssh = StoreSSH(
                    self.settings.known_hosts,
                    username=self.settings.ssh_user,
                    connect_timeout_s=self.settings.ssh_connect_timeout_s,
                    command_timeout_s=self.settings.ssh_command_timeout_s,
                )
            except StoreError as exc:
                raise StoreSystemsUnavailable(f"store SSH is not set up: {exc}") from None
        return self._ssh

    def library(self) -> dict[str, Workflow]:
        if self._library is None:
            self._library = load_library()
        return self._library

    async def close(self) -> None:
        for task in list(self._calls):  # their tickets still get updated
            await asyncio.gather(task, return_exceptions=True)
        for client in (self._storemaster, self._tickets, self._ssh):
            if client is not None:
                await client.close()

    # ------------------------------------------------------------ calls

    async def call_ticket(self, ticket_id: str) -> PlacedCall:
        server = self.server
        if server is None or not server.ready.is_set():
            raise AgentNotReady("the agent is not ready to place calls yet")
        storemaster, tickets = self._clients()
        ticket = await self._ticket(tickets, ticket_id)
        if ticket_id in self._active:
            raise TicketClosed(
                f"ticket {ticket_id} already has a call under way ({self._active[ticket_id]})"
            )
        self._active[ticket_id] = "starting"  # reserved: a second POST gets 409
        try:
            return await self._place(server, storemaster, tickets, ticket_id, ticket)
        except BaseException:
            self._active.pop(ticket_id, None)
            raise

    async def _place(
        self,
        server: Any,
        storemaster: StoreMasterClient,
        tickets: TicketClient,
        ticket_id: str,
        ticket: dict[str, Any],
    ) -> PlacedCall:
        try:
            chain, store_no, lane = int(ticket["chain"]), int(ticket["store"]), int(ticket["lane"])
            workflow = workflow_for_issue(str(ticket.get("issue")), self.library())
        except (KeyError, TypeError, ValueError, WorkflowError) as exc:
            raise StoreSystemsUnavailable(f"ticket {ticket_id} cannot be worked: {exc}") from None
        try:
            store = await storemaster.get_store(chain, store_no)
        except ApiError as exc:
            raise StoreSystemsUnavailable(f"StoreMaster: {exc}") from None
        uri = str(store.get("sip_uri") or "")
        if not uri.startswith("sip:"):
            raise StoreSystemsUnavailable(f"store {chain}/{store_no} has no SIP phone ({uri!r})")
        ssh = self._store_ssh()
        tools = StoreTools(CallContext(chain, store_no, ticket_id), ssh, storemaster, tickets)
        registry = tools.registry()

        engines = server.engines
        base: SessionOptions = server.settings.session
        options = dataclasses.replace(
            base, greeting=intro_line(base.agent_name, lane, store.get("name"))
        )
        prepared = await prepare_session(engines, options)
        try:
            call = await server.endpoint.place_call(
                uri, ring_timeout_s=self.settings.ring_timeout_s
            )
        except (CallFailed, TimeoutError, OSError) as exc:
            unanswered = isinstance(exc, CallFailed) and exc.reason is EndReason.NO_ANSWER
            why = "no answer" if unanswered else f"call failed: {exc}"
            await self._note_unreached(registry, uri, why)
            raise CallNotAnswered(f"the store at {uri} did not take the call ({why})") from None

        personality = AdaptivePersonality()
        llm = engines.llm
        phraser = self._phraser(llm, personality)
        context = {
            "lane": lane,
            "chain": chain,
            "store": store_no,
            "ticket_id": ticket_id,
            "poc_name": store.get("poc_name") or "there",
            "store_name": store.get("name") or f"store {store_no}",
        }
        run = WorkflowRun(
            workflow,
            registry,
            GuardedClassifier(LLMClassifier(llm)),
            context,
            library=self.library(),
            phraser=phraser,
            off_topic=LLMOffTopic(llm, timeout_s=self.settings.off_topic_timeout_s)
            if self.settings.off_topic_with_llm
            else None,
        )
        director = WorkflowDirector(
            run,
            tools=registry,
            personality=personality,
            ticket_id=ticket_id,
            transfer_uri=self.settings.transfer_uri,
        )
        recorded = getattr(server, "recorded", None)  # the server's call recording, if any
        if recorded is not None:
            call = recorded(call)
        session = CallSession(
            call,
            engines,
            options,
            prepared=prepared,
            record_sink=DirectedSink(director, server.sink),
            director=director,
        )
        call_id = call.info.call_id
        self._active[ticket_id] = call_id
        task = server.run_session(session)
        watcher = asyncio.get_running_loop().create_task(self._forget(ticket_id, task))
        self._calls.add(watcher)
        watcher.add_done_callback(self._calls.discard)
        log.info("ticket %s: calling %s (%s), call %s", ticket_id, uri, workflow.name, call_id)
        return PlacedCall(call_id, ticket_id, uri, workflow.name, task)

    # ------------------------------------------------------------ inbound

    def inbound_director(self, llm: Any, chain: int = 1) -> InboundPrinterDirector:
        """A director for a store calling in about a printer: asks store and lane, then
        runs the workflow for what the printer reports (no ticket: nothing to update)."""
        storemaster, _ = self._clients()
        ssh = self._store_ssh()

        def tools_for(chain_no: int, store_no: int) -> Any:
            return StoreTools(CallContext(chain_no, store_no), ssh, storemaster).registry()

        def start_run(name: str, context: dict[str, Any], tools: Any) -> WorkflowDirector:
            personality = AdaptivePersonality()
            run = WorkflowRun(
                self.library()[name],
                tools,
                GuardedClassifier(LLMClassifier(llm)),
                context,
                library=self.library(),
                phraser=self._phraser(llm, personality),
            )
            return WorkflowDirector(
                run, tools=tools, personality=personality, transfer_uri=self.settings.transfer_uri
            )

        return InboundPrinterDirector(storemaster, tools_for, start_run, chain=chain)

    def _phraser(self, llm: Any, personality: AdaptivePersonality) -> Any:
        if self.settings.phrase_with_llm:
            return LLMPhraser(llm, personality, timeout_s=self.settings.phrase_timeout_s)
        return StylePhraser(personality)

    async def _ticket(self, tickets: TicketClient, ticket_id: str) -> dict[str, Any]:
        try:
            ticket = await tickets.get(ticket_id)
        except ApiNotFound:
            raise TicketNotFound(f"no ticket {ticket_id!r}") from None
        except ApiError as exc:
            raise StoreSystemsUnavailable(f"ticket API: {exc}") from None
        if ticket.get("status") in CLOSED_STATUSES:
            raise TicketClosed(f"ticket {ticket_id} is already {ticket['status']}")
        return ticket

    async def _forget(self, ticket_id: str, task: asyncio.Task[CallRecord]) -> None:
        try:
            await asyncio.gather(task, return_exceptions=True)
        finally:
            self._active.pop(ticket_id, None)

    async def _note_unreached(self, registry: Any, uri: str, why: str) -> None:
        text = f"Outbound call to {uri} did not connect ({why}); the ticket stays open."
        try:
            await registry.execute("update_ticket", {"status": "in_progress"})
            await registry.execute("add_ticket_note", {"text": text})
        except (ToolError, OSError) as exc:
            log.warning("could not note the unanswered call on the ticket: %s", exc)
