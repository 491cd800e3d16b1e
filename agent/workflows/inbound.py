"""Inbound printer calls: Maya asks which store and lane, checks the printer, then the
matching workflow takes the call over (a WorkflowDirector from there on).

    director = InboundPrinterDirector(storemaster, tools_for, start_run)
    CallSession(call, engines, options, director=director, ...)

The store and lane come from what the caller says (digits or words, see spoken_numbers)
and are checked against StoreMaster and the store's own lane list before anything runs on
the store PC; a number that is not a store or lane there is asked again, a bounded number
of times, then the call ends with a callback booked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.session.director import DirectedReply
from agent.session.record import CallRecord
from agent.tools.errors import ApiError, ApiNotFound, ToolError
from agent.workflows.call_director import WorkflowDirector
from agent.workflows.engine import ToolRunner
from agent.workflows.spoken_numbers import spoken_number
from telephony.interface import Call

MAX_ASKS = 3  # per question, then a callback
ASK_STORE = "I can help with that. Which store number are you calling from?"
ASK_LANE = "Thanks. And which checkout lane is the printer on?"
STORE_AGAIN = "Sorry, I didn't catch a store number I can find. Could you say it again?"
LANE_AGAIN = "Sorry, which lane number is it? Store {store} has lanes {lanes}."
GIVE_UP = (
    "I'm sorry, I couldn't get the store and lane. Someone from our team will call you "
    "back to sort it out. Thanks for calling!"
)
STORE_DOWN = (
    "I'm sorry, I can't reach our store systems right now. Someone from our team will "
    "call you back shortly. Thanks for calling!"
)

ToolsFor = Callable[[int, int], ToolRunner]  # (chain, store) -> that store's tools
# (workflow name, call context, tools) -> the director that runs it
StartRun = Callable[[str, dict[str, Any], ToolRunner], WorkflowDirector]


def workflow_for_status(status: dict[str, Any]) -> str:
    """The workflow for what the printer reports (a caller's account is not enough)."""
    if status.get("paper") == "Jam":
        return "paper_jam"
    if status.get("paper") == "Out":
        return "KBA3813"
    if status.get("status") == "Error":
        return "printer_error"
    if status.get("status") == "Off Line":
        return "printer_offline"
    return "print_quality"  # it says Idle: the complaint is about what it prints


class InboundPrinterDirector:
    """CallDirector for a store calling in about a printer."""

    def __init__(
        self,
        storemaster: Any,
        tools_for: ToolsFor,
        start_run: StartRun,
        *,
        chain: int = 1,
    ) -> None:
        self._storemaster = storemaster
        self._tools_for = tools_for
        self._start_run = start_run
        self.chain = chain
        self.store: dict[str, Any] | None = None
        self.lane: int | None = None
        self.inner: WorkflowDirector | None = None
        self._asked = {"store": 0, "lane": 0}
        self._given_up = False

    async def respond(self, caller_text: str | None) -> DirectedReply:
        if self.inner is not None:
            return await self.inner.respond(caller_text)
        if caller_text is None:
            return DirectedReply(())  # the greeting asked how to help: let them say
        if self.store is None:
            return await self._take_store(caller_text)
        return await self._take_lane(caller_text)

    async def _take_store(self, text: str) -> DirectedReply:
        number = spoken_number(text)
        if number is not None:
            try:
                self.store = await self._storemaster.get_store(self.chain, number)
            except ApiNotFound:
                self.store = None
            except (ApiError, OSError):
                return self._end(STORE_DOWN)
            if self.store is not None:
                return self._ask("lane", ASK_LANE)
        if self._asked["store"] == 0:
            return self._ask("store", ASK_STORE)
        return self._ask("store", STORE_AGAIN)

    async def _take_lane(self, text: str) -> DirectedReply:
        assert self.store is not None
        lanes = [int(lane) for lane in self.store.get("lanes") or []]
        number = spoken_number(text)
        if number is None or number not in lanes:
            listed = ", ".join(map(str, lanes))
            return self._ask("lane", LANE_AGAIN.format(store=self.store["store"], lanes=listed))
        self.lane = number
        store_no = int(self.store["store"])
        tools = self._tools_for(self.chain, store_no)
        context = {
            "lane": number,
            "chain": self.chain,
            "store": store_no,
            "poc_name": self.store.get("poc_name") or "there",
            "store_name": self.store.get("name") or f"store {store_no}",
        }
        try:
            status = await tools.execute("check_printer_status", {"lane": number})
            name = workflow_for_status(status)
        except (ToolError, OSError, TimeoutError):
            name = "pc_unresponsive"  # the store PC does not answer: that is the problem
        self.inner = self._start_run(name, context, tools)
        return await self.inner.respond(None)

    def _ask(self, what: str, text: str) -> DirectedReply:
        self._asked[what] += 1
        if self._asked[what] > MAX_ASKS:
            return self._end(GIVE_UP)
        return DirectedReply((text,))

    def _end(self, text: str) -> DirectedReply:
        self._given_up = True
        return DirectedReply((text,), outcome="callback")

    def unsaid(self, reply: DirectedReply) -> None:
        if self.inner is not None:
            self.inner.unsaid(reply)

    def summary(self) -> dict[str, Any] | None:
        if self.inner is not None:
            summary = self.inner.summary()
        else:
            summary = {
                "name": None,
                "outcome": "callback" if self._given_up else None,
                "steps": [],
                "tried": [],
                "ticket_id": None,
                "ticket_updated": False,
            }
        store = self.store or {}
        summary["caller_store"] = {
            "chain": self.chain,
            "store": store.get("store"),
            "lane": self.lane,
        }
        return summary

    async def hand_over(self, call: Call) -> bool:
        return await self.inner.hand_over(call) if self.inner is not None else False

    async def finish(self, record: CallRecord) -> None:
        if self.inner is not None:
            await self.inner.finish(record)
