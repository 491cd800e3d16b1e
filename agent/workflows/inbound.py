"""Inbound printer calls: Maya asks which store and lane, checks the printer, then the
matching workflow takes the call over (a WorkflowDirector from there on).

    director = InboundPrinterDirector(storemaster, tools_for, start_run)
    CallSession(call, engines, options, director=director, ...)

The store and lane come from what the caller says (digits or words, see spoken_numbers)
and are checked against StoreMaster and the store's own lane list before anything runs on
the store PC. Phone-line STT mangles store numbers ("store ten forty-two" comes out as
"4.10 42"), so each plausible reading is looked up, and a reading that is no store but
near one of the chain's stores is confirmed with the caller ("Store 1042, is that
right?") before it is used. A number that is not a store or lane there is asked again, a
bounded number of times, then the call ends with a callback booked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

from agent.session.director import DirectedReply
from agent.session.record import CallRecord
from agent.tools.errors import ApiError, ApiNotFound, ToolError
from agent.workflows.call_director import WorkflowDirector
from agent.workflows.engine import ToolRunner
from agent.workflows.spoken_numbers import closest_number, number_readings, spoken_number
from telephony.interface import Call

MAX_ASKS = 3  # per question, then a callback
MAX_LOOKUPS = 3  # StoreMaster look-ups per answer (its readings, likeliest first)
ASK_STORE = "I can help with that. Which store number are you calling from?"
CONFIRM_STORE = "Store {store}, is that right?"
STORE_NOT_THAT = "Sorry about that. Which store number is it?"
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
Asking = Literal["problem", "store", "store_confirmation", "lane"]

_YES = re.compile(r"\b(yes|yeah|yep|yup|correct|right|exactly|sure|affirmative|that's it)\b")
_NO = re.compile(r"\b(no|nope|nah|wrong|incorrect|not)\b")
# "lane four" inside a store answer is the lane, not the store
_LANE = re.compile(r"\blanes?\b[\s,.:#]*(?:number\s+)?((?:[a-z]+|\d+)(?:[\s-]+(?:[a-z]+|\d+))?)")


def yes_or_no(text: str) -> bool | None:
    """The caller's answer to a yes/no question: True, False, or None when unclear."""
    lowered = text.lower().replace("’", "'")
    yes, no = bool(_YES.search(lowered)), bool(_NO.search(lowered))
    return None if yes == no else yes


def lane_said(text: str) -> int | None:
    """The lane number in "... lane four ..." (None when no lane is named)."""
    match = _LANE.search(text.lower())
    return spoken_number(match.group(1), loose=True) if match else None


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
        self._candidate: dict[str, Any] | None = None  # a near store, awaiting a yes
        self._lane_hint: int | None = None  # a lane named along with the store
        self._known: list[int] | None = None  # the chain's stores, fetched once

    @property
    def asking(self) -> Asking | None:
        """What the caller is being asked for (None once the workflow runs)."""
        if self.inner is not None or self._given_up:
            return None
        if self._candidate is not None:
            return "store_confirmation"
        if self.store is None:
            return "store" if self._asked["store"] else "problem"  # nothing asked yet
        return "lane"

    async def respond(self, caller_text: str | None) -> DirectedReply:
        if self.inner is not None:
            return await self.inner.respond(caller_text)
        if caller_text is None:
            return DirectedReply(())  # the greeting asked how to help: let them say
        if self._candidate is not None:
            return await self._confirm_store(caller_text)
        if self.store is None:
            return await self._take_store(caller_text)
        return await self._take_lane(caller_text)

    async def _take_store(self, text: str) -> DirectedReply:
        lane = lane_said(text)
        readings = number_readings(_LANE.sub(" ", text.lower()))
        try:
            found, sure = await self._find_store(readings)
        except (ApiError, OSError):
            return self._end(STORE_DOWN)
        if lane is not None:
            self._lane_hint = lane  # "the printer on lane four": no need to ask later
        if found is not None:
            if not sure:
                self._candidate = found
                return self._ask("store", CONFIRM_STORE.format(store=found["store"]))
            return await self._store_found(found)
        if self._asked["store"] == 0:
            return self._ask("store", ASK_STORE)
        return self._ask("store", STORE_AGAIN)

    async def _confirm_store(self, text: str) -> DirectedReply:
        assert self._candidate is not None
        answer = yes_or_no(text)
        if answer is True:
            found, self._candidate = self._candidate, None
            return await self._store_found(found, text)
        if number_readings(_LANE.sub(" ", text.lower())):
            self._candidate = None  # "no, it's ten forty two": the number said now
            return await self._take_store(text)
        if answer is False:
            self._candidate = None
            return self._ask("store", STORE_NOT_THAT)
        return self._ask("store", CONFIRM_STORE.format(store=self._candidate["store"]))

    async def _store_found(self, store: dict[str, Any], text: str = "") -> DirectedReply:
        self.store = store
        lane = lane_said(text) if text else None
        lane = lane if lane is not None else self._lane_hint
        if lane is not None and lane in self._lanes():
            return await self._start(lane)  # "store ten forty two, lane four": both at once
        return self._ask("lane", ASK_LANE)

    async def _find_store(self, readings: list[int]) -> tuple[dict[str, Any] | None, bool]:
        """(the store, sure): the first reading that is a store (sure when it is the
        whole number as said), else the chain's one store near a reading (not sure)."""
        for index, number in enumerate(readings[:MAX_LOOKUPS]):
            store = await self._lookup(number)
            if store is not None:
                return store, index == 0
        if not readings:
            return None, False
        near = closest_number(readings, await self._known_stores())
        return (await self._lookup(near) if near is not None else None), False

    async def _lookup(self, number: int) -> dict[str, Any] | None:
        try:
            return await self._storemaster.get_store(self.chain, number)
        except ApiNotFound:
            return None

    async def _known_stores(self) -> list[int]:
        if self._known is None:
            listing = getattr(self._storemaster, "list_stores", None)
            try:
                self._known = list(await listing(self.chain)) if listing else []
            except (ApiError, OSError):  # a StoreMaster without a listing: exact numbers only
                self._known = []
        return self._known

    def _lanes(self) -> list[int]:
        assert self.store is not None
        return [int(lane) for lane in self.store.get("lanes") or []]

    async def _take_lane(self, text: str) -> DirectedReply:
        assert self.store is not None
        lanes = self._lanes()
        number = lane_said(text)
        # A lane is expected: "playing for" is how Whisper wrote "lane four" once.
        number = number if number is not None else spoken_number(text, loose=True)
        if number is None or number not in lanes:
            listed = ", ".join(map(str, lanes))
            return self._ask("lane", LANE_AGAIN.format(store=self.store["store"], lanes=listed))
        return await self._start(number)

    async def _start(self, number: int) -> DirectedReply:
        assert self.store is not None
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
        summary["asking"] = self.asking
        return summary

    async def hand_over(self, call: Call) -> bool:
        return await self.inner.hand_over(call) if self.inner is not None else False

    async def finish(self, record: CallRecord) -> None:
        if self.inner is not None:
            await self.inner.finish(record)
