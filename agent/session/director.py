"""Workflow-directed calls: what the session needs from a director, and its record sink.

A director replaces the free LLM reply: each caller turn's text goes to the director,
which answers with the text to speak (the next workflow step) and, at the end, the
call's outcome. The session keeps doing everything else (barge-in, holding lines,
silence, record keeping); see CallSession(director=...).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from agent.session.record import CallRecord, RecordSink
from telephony.interface import Call

log = logging.getLogger(__name__)

DirectedOutcome = Literal["resolved", "escalated", "callback"]
FINISH_TIMEOUT_S = 20.0  # longest a director may take to close its books at call end


@dataclass(frozen=True)
class DirectedReply:
    """What to say now (pieces spoken sentence by sentence) and, when the workflow has
    ended, how the call ends."""

    texts: tuple[str, ...]
    outcome: DirectedOutcome | None = None


class CallDirector(Protocol):
    async def respond(self, caller_text: str | None) -> DirectedReply:
        """The reply to the caller's turn; None asks for the opening. Must survive the
        awaiting turn being cancelled (barge-in): a reply computed but never handed out
        comes back from the next call. Raises agent.session.reply.StageFailed."""
        ...

    def unsaid(self, reply: DirectedReply) -> None:
        """A reply handed out was never heard (cut before any audio): say it next time."""
        ...

    def summary(self) -> dict[str, Any] | None:
        """The workflow summary for the call record (contract: name, outcome, steps, ...)."""
        ...

    async def hand_over(self, call: Call) -> bool:
        """After the outcome was spoken: True when the call was transferred (we keep off it)."""
        ...

    async def finish(self, record: CallRecord) -> None:
        """The call is over: make sure the ticket is updated whatever happened."""
        ...


class DirectedSink:
    """A RecordSink that lets the director close its books (ticket update, summary) before
    the record goes on to the real sink, so the persisted record says what happened."""

    def __init__(self, director: CallDirector, inner: RecordSink | None) -> None:
        self.director = director
        self.inner = inner

    async def on_call_end(self, record: CallRecord) -> None:
        try:
            await asyncio.wait_for(self.director.finish(record), FINISH_TIMEOUT_S)
        except Exception:  # never lose the record for a ticket API hiccup
            log.exception("call %s: the workflow could not finish its ticket", record.call_id)
        try:
            record.workflow = self.director.summary()
        except Exception:
            log.exception("call %s: no workflow summary", record.call_id)
        if self.inner is not None:
            await self.inner.on_call_end(record)
