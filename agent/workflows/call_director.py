"""WorkflowDirector: a WorkflowRun driving a live call (agent/session/director.py).

Each caller turn's text goes to `WorkflowRun.on_caller`; the Prompt or Outcome that comes
back is what Maya says, sentence by sentence. Around that it owns the call's books:
- the personality hears every reply before the workflow does (it shapes the phrasing);
- a workflow step runs in a task of its own, so barge-in cancelling the turn never leaves
  the run half-way through a tool step: the reply is kept and said at the next turn;
- escalation transfers the call when a transfer target is set (and the call can), else a
  callback is booked; either way the ticket gets the summary;
- at call end the ticket is updated even when the workflow never reached an outcome
  (hang-up, silence, model failure), with what was tried and why it stopped.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from agent.session.director import DirectedReply
from agent.session.record import CallRecord
from agent.session.reply import StageFailed
from agent.tools.errors import ToolError
from agent.workflows.engine import Outcome, Prompt, ToolRunner, WorkflowRun
from agent.workflows.personality import AdaptivePersonality
from agent.workflows.schema import WorkflowError
from serving.text import split_sentences
from telephony.interface import Call

log = logging.getLogger(__name__)

TRANSFER_TIMEOUT_S = 30.0
TICKET_TIMEOUT_S = 10.0
# Why a call ended before the workflow did, by session outcome (agent/session/record.py).
_WHY = {
    "completed": "the store hung up",
    "caller_silent": "the store stopped answering",
    "max_duration": "the call reached its time limit",
    "failed": "our speech models kept failing",
    "error": "the call broke on our side",
    "escalated": "the call was handed to a person",
}


class WorkflowDirector:
    def __init__(
        self,
        run: WorkflowRun,
        *,
        tools: ToolRunner | None = None,
        personality: AdaptivePersonality | None = None,
        ticket_id: str | None = None,
        transfer_uri: str | None = None,
        intro: str | None = None,
    ) -> None:
        self.run = run
        self.tools = tools
        self.personality = personality or AdaptivePersonality()
        self.ticket_id = ticket_id
        self.transfer_uri = transfer_uri
        self.intro = intro  # said before the first step (when no greeting line says it)
        self.started_as = run.workflow.name
        self.last_prompt: Prompt | None = None
        self.set_aside: list[str] = []  # caller words said over a reply they never heard
        self.ticket_updated = False
        self.ticket_error: str | None = None
        self.ticket_note: str | None = None
        self.handed_over = False
        self.callback_booked = False
        self._pending: asyncio.Future[DirectedReply] | None = None
        self._unsaid: DirectedReply | None = None

    # ------------------------------------------------------------ CallDirector

    async def respond(self, caller_text: str | None) -> DirectedReply:
        if self._pending is not None:  # computed for a turn that was cut off: say it now
            reply = await self._wait(self._pending)
            self._aside(caller_text)
            return reply
        if self._unsaid is not None:
            reply, self._unsaid = self._unsaid, None
            self._aside(caller_text)
            return reply
        if self.run.outcome is not None:
            # The closing line was cut off after it began (barge-in): the workflow is over
            # all the same, so end the call now instead of waiting on a caller forever.
            return DirectedReply((), outcome=self.run.outcome.kind)
        self._pending = asyncio.ensure_future(self._step(caller_text))
        return await self._wait(self._pending)

    def unsaid(self, reply: DirectedReply) -> None:
        self._unsaid = reply

    def summary(self) -> dict[str, Any]:
        run, outcome = self.run, self.run.outcome
        return {
            "name": run.workflow.name,
            "started_as": self.started_as,
            "outcome": outcome.kind if outcome else None,
            "steps": run.steps_taken,
            "tried": list(run.tried),
            "waiting_at": None if outcome or not self.last_prompt else self.last_prompt.step_id,
            "summary": outcome.summary if outcome else self.ticket_note,
            "ticket_id": self.ticket_id,
            "ticket_updated": self.ticket_updated,
            "ticket_error": self.ticket_error,
            "handed_over": self.handed_over,
            "callback_booked": self.callback_booked,
            "personality": self.personality.scores(),
        }

    async def hand_over(self, call: Call) -> bool:
        outcome = self.run.outcome
        if outcome is None or outcome.kind != "escalated":
            return False
        transfer = getattr(call, "transfer", None)
        if self.transfer_uri and callable(transfer):
            try:
                self.handed_over = bool(
                    await asyncio.wait_for(transfer(self.transfer_uri), TRANSFER_TIMEOUT_S)
                )
            except Exception as exc:  # a failed transfer falls back to a callback
                log.warning("transfer to %s failed: %s", self.transfer_uri, exc)
        if self.handed_over:
            await self._note(
                f"Escalated: call transferred to {self.transfer_uri}.\n{outcome.summary}"
            )
            return True
        self.callback_booked = True
        why = "transfer failed" if self.transfer_uri else "no transfer target configured"
        await self._note(f"Escalated ({why}): callback booked.\n{outcome.summary}")
        return False

    async def finish(self, record: CallRecord) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:  # a step still working for a call that is over: stop it
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        outcome = self.run.outcome
        if outcome is not None:
            self.ticket_updated = outcome.ticket_updated
            self.ticket_error = outcome.ticket_error
            if not outcome.ticket_updated:  # the ticket API failed at the time: once more
                status = {"resolved": "resolved", "escalated": "escalated"}.get(
                    outcome.kind, "in_progress"
                )
                await self._update(status, outcome.summary)
            return
        why = _WHY.get(record.outcome, f"the call ended ({record.outcome})")
        at = self.last_prompt.step_id if self.last_prompt else "the first check"
        tried = "; ".join(self.run.tried) or "nothing yet"
        self.ticket_note = (
            f"Call {record.call_id} ended before the {self.run.workflow.name} workflow "
            f"finished: {why} (end reason: {record.end_reason or 'unknown'}). "
            f"Stopped at: {at}. Tried: {tried}."
        )[:2000]
        await self._update("in_progress", self.ticket_note)
        await self._note(self.ticket_note)

    # ------------------------------------------------------------ the workflow

    async def _step(self, caller_text: str | None) -> DirectedReply:
        try:
            if caller_text is None:
                result = await self.run.start()
            else:
                self.personality.observe(caller_text)
                result = await self.run.on_caller(caller_text)
        except WorkflowError as exc:
            raise StageFailed("workflow", str(exc)) from exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the classifier's LLM failing, mostly
            raise StageFailed("llm", f"{type(exc).__name__}: {exc}") from exc
        texts = split_sentences(result.text) or [result.canonical]
        if caller_text is None and self.intro:
            texts = [self.intro, *texts]
        if isinstance(result, Outcome):
            return DirectedReply(tuple(texts), outcome=result.kind)
        self.last_prompt = result
        return DirectedReply(tuple(texts))

    async def _wait(self, task: asyncio.Future[DirectedReply]) -> DirectedReply:
        try:
            reply = await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                self._pending = None
            raise  # the turn was cut: the task goes on, its reply waits in _pending
        except BaseException:
            self._pending = None
            raise
        self._pending = None
        return reply

    def _aside(self, caller_text: str | None) -> None:
        if caller_text:
            self.set_aside.append(caller_text)

    # ------------------------------------------------------------ the ticket

    def _can(self, tool: str) -> bool:
        return self.tools is not None and self.ticket_id is not None and tool in self.tools.names

    async def _update(self, status: str, notes: str) -> None:
        if not self._can("update_ticket"):
            return
        assert self.tools is not None
        try:
            await asyncio.wait_for(
                self.tools.execute(
                    "update_ticket", {"status": status, "resolution_notes": notes[:4000]}
                ),
                TICKET_TIMEOUT_S,
            )
        except (ToolError, OSError, TimeoutError) as exc:
            self.ticket_error = f"{type(exc).__name__}: {exc}"
            log.warning("ticket %s not updated: %s", self.ticket_id, exc)
            return
        self.ticket_updated, self.ticket_error = True, None

    async def _note(self, text: str) -> None:
        if not self._can("add_ticket_note"):
            return
        assert self.tools is not None
        try:
            await asyncio.wait_for(
                self.tools.execute("add_ticket_note", {"text": text[:2000]}), TICKET_TIMEOUT_S
            )
        except (ToolError, OSError, TimeoutError) as exc:
            log.warning("ticket %s: note not added: %s", self.ticket_id, exc)
