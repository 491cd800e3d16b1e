"""The workflow driver: walks one workflow for one call, step by step.

The engine decides every step. The caller's words only ever reach the `Classifier`,
which picks one of the current step's named branches (or "unclear" / "off_topic");
tool calls and their arguments come from the workflow file and the call's context,
never from the caller, so nothing said on the phone can run anything the step does not.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from agent.tools.errors import ToolError
from agent.workflows.schema import Step, Workflow, WorkflowError

OutcomeKind = Literal["resolved", "escalated", "callback"]
_OUTCOME_OF = {"resolve": "resolved", "escalate": "escalated", "callback": "callback"}
# The ticket API has no "callback" status: the ticket stays open with a note saying so.
_TICKET_STATUS_OF = {"resolved": "resolved", "escalated": "escalated", "callback": "in_progress"}
UNCLEAR, OFF_TOPIC, NOT_YET = "unclear", "off_topic", "not_yet"
log = logging.getLogger(__name__)
# Bounds so a caller (or a broken classifier) can never keep a call on one step forever.
MAX_STEPS_WITHOUT_REPLY = 50
OFF_TOPIC_LIMIT = 3
NOT_YET_LIMIT = 5
NOT_YET_MEANS = "the caller has not finished yet, is still working on it, or asks for a moment"
DEFAULT_OFF_TOPIC_ANSWER = "Good question; let me come back to that once the printer is sorted."


class Classifier(Protocol):
    """Picks the branch the caller's reply means. Must return one of `branches`' keys,
    "unclear" or "off_topic"; anything else is treated as "unclear".

    A classifier may also have `async prepare(question, branches)`: the engine calls it
    when it asks the question, so work that does not need the reply (an LLM prompt's
    prefix) is done while the question is spoken and the caller answers."""

    async def classify(self, question: str, reply: str, branches: Mapping[str, str]) -> str: ...


class Phraser(Protocol):
    """Rephrases the engine's canonical text (as Maya); must keep its meaning."""

    async def phrase(self, text: str, *, step: Step, attempt: int) -> str: ...


# (the question being asked, the caller's off-topic reply) -> a brief answer
OffTopicHook = Callable[[str, str], Awaitable[str]]


class ToolRunner(Protocol):
    """What the engine needs from agent.tools.ToolRegistry."""

    @property
    def names(self) -> list[str]: ...

    async def execute(self, name: str, arguments: Mapping[str, Any]) -> Any: ...


@dataclass(frozen=True)
class Prompt:
    """The engine waits for the caller: say `text`, then pass the reply to on_caller."""

    text: str
    canonical: str
    workflow: str
    step_id: str
    kind: Literal["ask", "wait"]
    branches: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    """The workflow has ended; say `text` and close the call."""

    kind: OutcomeKind
    text: str
    canonical: str
    workflow: str
    step_id: str
    summary: str
    tried: tuple[str, ...]
    ticket_updated: bool
    ticket_error: str | None = None


@dataclass(frozen=True)
class TranscriptEntry:
    workflow: str
    step_id: str
    kind: str
    detail: str = ""

    @property
    def step(self) -> str:
        return f"{self.workflow}.{self.step_id}"


class _IdentityPhraser:
    async def phrase(self, text: str, *, step: Step, attempt: int) -> str:
        return text


async def _default_off_topic(question: str, reply: str) -> str:
    return DEFAULT_OFF_TOPIC_ANSWER


@dataclass
class _Waiting:
    step: Step
    unclear: int = 0
    off_topic: int = 0
    not_yet: int = 0


class WorkflowRun:
    """One workflow run for one call.

    `context` holds the call's variables: `lane` (required) and optionally chain, store,
    ticket_id, poc_name, store_name. `library` resolves handoffs to other workflows.
    With `update_ticket` (default) the run closes the ticket itself when it ends, through
    the `update_ticket` tool, whenever the tools offer it.
    """

    def __init__(
        self,
        workflow: Workflow,
        tools: ToolRunner,
        classifier: Classifier,
        context: Mapping[str, Any],
        *,
        library: Mapping[str, Workflow] | None = None,
        phraser: Phraser | None = None,
        off_topic: OffTopicHook | None = None,
        update_ticket: bool = True,
        max_settle_s: float | None = None,
    ) -> None:
        lane = context.get("lane")
        if not isinstance(lane, int) or isinstance(lane, bool):
            raise WorkflowError(f"workflow context needs an integer `lane`, got {lane!r}")
        self.workflow = workflow
        self._tools = tools
        self._classifier = classifier
        self._context = dict(context)
        self._library = dict(library or {})
        self._library.setdefault(workflow.name, workflow)
        self._phraser = phraser or _IdentityPhraser()
        self._off_topic = off_topic or _default_off_topic
        self._update_ticket = update_ticket
        self._max_settle_s = max_settle_s
        self._saved: dict[str, Any] = {}
        self._visits: dict[tuple[str, str], int] = {}
        self._waiting: _Waiting | None = None
        self._lock = asyncio.Lock()
        self.transcript: list[TranscriptEntry] = []
        self.tried: list[str] = []
        self.outcome: Outcome | None = None
        self._started = False
        self._preparing: set[asyncio.Task[None]] = set()

    @property
    def steps_taken(self) -> list[str]:
        """`workflow.step` for every step entered, in order (for the correct-step rate)."""
        return [e.step for e in self.transcript if e.kind == "enter"]

    # ------------------------------------------------------------ driver API

    async def start(self) -> Prompt | Outcome:
        async with self._lock:
            if self._started:
                raise WorkflowError("this workflow run has already started")
            self._started = True
            return await self._advance(self.workflow.start)

    async def on_caller(self, text: str) -> Prompt | Outcome:
        async with self._lock:
            if self.outcome is not None:
                raise WorkflowError("this workflow run has already ended")
            if self._waiting is None:
                raise WorkflowError("call start() before on_caller()")
            return await self._on_reply(self._waiting, str(text))

    # ------------------------------------------------------------ replies

    def _reply_options(self, step: Step) -> tuple[str, dict[str, str]]:
        """The question a reply to `step` answers, and the labels it can get."""
        options = {b.name: b.described for b in step.branches}
        if step.kind == "wait":
            options[NOT_YET] = NOT_YET_MEANS
        return self._render(step.text), options

    def _prepare_classifier(self, step: Step) -> None:
        prepare = getattr(self._classifier, "prepare", None)
        if prepare is None:
            return
        task = asyncio.get_running_loop().create_task(prepare(*self._reply_options(step)))
        # Only ever a head start: a failed or unfinished one costs the reply nothing.
        task.add_done_callback(_ignore_failure)
        self._preparing.add(task)
        task.add_done_callback(self._preparing.discard)

    async def _on_reply(self, waiting: _Waiting, reply: str) -> Prompt | Outcome:
        step = waiting.step
        question, options = self._reply_options(step)
        label = await self._classifier.classify(question, reply, options)
        if label not in options and label not in (UNCLEAR, OFF_TOPIC, NOT_YET):
            label = UNCLEAR  # a classifier is never trusted to invent a branch
        self._log(step, "reply", label)

        if label == OFF_TOPIC:
            waiting.off_topic += 1
            if waiting.off_topic > OFF_TOPIC_LIMIT:
                return await self._give_up(step, "kept going off topic")
            answer = await self._off_topic(question, reply)
            return await self._prompt(step, [answer], question, attempt=0)
        if label == UNCLEAR:
            waiting.unclear += 1
            if waiting.unclear > self.workflow.unclear_limit:
                return await self._give_up(step, "reply stayed unclear")
            return await self._prompt(step, [], self._reask(step, waiting.unclear), waiting.unclear)
        if label == NOT_YET:
            waiting.not_yet += 1
            if waiting.not_yet > NOT_YET_LIMIT:
                return await self._give_up(step, "could not finish the step")
            # "Hang on" to a question: wait, then ask it again; to a wait step: keep waiting.
            again = "Just tell me when it's done." if step.kind == "wait" else question
            return await self._prompt(step, ["No rush, take your time."], again, attempt=0)
        branch = step.branch(label)
        assert branch is not None
        self.tried.append(f"{step.note or step.id}: {label}")
        self._waiting = None
        return await self._advance(branch.goto)

    async def _give_up(self, step: Step, why: str) -> Prompt | Outcome:
        self.tried.append(f"{step.note or step.id}: {why}")
        self._waiting = None
        return await self._advance(step.on_unclear or self.workflow.on_unclear)

    def _reask(self, step: Step, attempt: int) -> str:
        if step.reask:
            return self._render(step.reask[(attempt - 1) % len(step.reask)])
        return "Sorry, let me put that another way. " + self._render(step.text)

    # ------------------------------------------------------------ stepping

    async def _advance(self, step_id: str) -> Prompt | Outcome:
        spoken: list[str] = []
        for _ in range(MAX_STEPS_WITHOUT_REPLY):
            step = self.workflow.step(step_id)
            key = (self.workflow.name, step.id)
            self._visits[key] = self._visits.get(key, 0) + 1
            if step.max_visits is not None and self._visits[key] > step.max_visits:
                self._log(step, "max_visits", str(step.max_visits))
                self.tried.append(f"{step.note or step.id}: gave up after {step.max_visits} tries")
                step_id = step.on_max_visits or self.workflow.on_unclear
                continue
            self._log(step, "enter")
            if step.kind == "say":
                spoken.append(self._render(step.text))
                step_id = step.next or ""
            elif step.kind == "tool":
                step_id = await self._run_tool(step)
            elif step.kind == "handoff":
                step_id = self._hand_off(step)
            elif step.needs_reply:
                self._waiting = _Waiting(step)
                return await self._prompt(step, spoken, self._render(step.text), attempt=0)
            else:
                return await self._finish(step, spoken)
        raise WorkflowError(
            f"{self.workflow.source}: more than {MAX_STEPS_WITHOUT_REPLY} steps without a "
            f"reply from the caller (at step {step_id!r})"
        )

    def _hand_off(self, step: Step) -> str:
        target = self._library.get(step.workflow or "")
        if target is None:
            raise WorkflowError(
                f"{self.workflow.source}: step {step.id!r}: workflow {step.workflow!r} "
                "is not in the library"
            )
        self.tried.append(f"handed over to {target.name}")
        self.workflow = target
        return step.at or target.start

    async def _prompt(self, step: Step, before: list[str], text: str, attempt: int) -> Prompt:
        self._prepare_classifier(step)
        canonical = " ".join([*before, text])
        phrased = await self._phraser.phrase(canonical, step=step, attempt=attempt)
        return Prompt(
            text=phrased,
            canonical=canonical,
            workflow=self.workflow.name,
            step_id=step.id,
            kind=step.kind,  # type: ignore[arg-type]
            branches=tuple(b.name for b in step.branches)
            + ((NOT_YET,) if step.kind == "wait" else ()),
        )

    # ------------------------------------------------------------ tools

    async def _run_tool(self, step: Step) -> str:
        name = step.tool or ""
        args = {key: self._argument(value) for key, value in step.args.items()}
        what = step.note or name
        try:
            result = await self._tools.execute(name, args)
            if step.settle is not None:
                result = await self._settle(step, name, args, result)
        except (ToolError, OSError, TimeoutError) as exc:
            # Store unreachable, refused, API down: the workflow says where to go.
            self._log(step, "tool_error", f"{type(exc).__name__}: {exc}")
            self.tried.append(f"{what}: failed ({exc})")
            return step.on_error or ""
        self._log(step, "tool_result", _brief(result))
        self.tried.append(f"{what}: {_brief(result)}")
        if step.save_as:
            self._saved[step.save_as] = result
        for case in step.cases:
            if _matches(result, case.when):
                return case.goto
        return step.next or ""

    async def _settle(self, step: Step, name: str, args: dict[str, Any], result: Any) -> Any:
        settle = step.settle
        assert settle is not None
        limit = settle.up_to_s
        if self._max_settle_s is not None:
            limit = min(limit, self._max_settle_s)
        deadline = time.monotonic() + limit
        while _matches(result, settle.while_) and time.monotonic() < deadline:
            await asyncio.sleep(settle.every_s)
            result = await self._tools.execute(name, args)
        return result

    def _argument(self, value: Any) -> Any:
        if isinstance(value, str):
            if value.startswith("$"):
                return self._context[value[1:]] if value[1:] in self._context else None
            return self._render(value)
        return value

    # ------------------------------------------------------------ the end

    async def _finish(self, step: Step, spoken: list[str]) -> Outcome:
        kind: OutcomeKind = _OUTCOME_OF[step.kind]  # type: ignore[assignment]
        headline = self._render(step.summary)
        tried = tuple(self.tried)
        summary = headline + ("\nTried: " + "; ".join(tried) if tried else "")
        updated, error = False, None
        if self._update_ticket and "update_ticket" in self._tools.names:
            updated, error = await self._close_ticket(kind, summary)
        canonical = " ".join([*spoken, self._render(step.text)])
        self.outcome = Outcome(
            kind=kind,
            text=await self._phraser.phrase(canonical, step=step, attempt=0),
            canonical=canonical,
            workflow=self.workflow.name,
            step_id=step.id,
            summary=summary,
            tried=tried,
            ticket_updated=updated,
            ticket_error=error,
        )
        self._log(step, "outcome", kind)
        return self.outcome

    async def _close_ticket(self, kind: OutcomeKind, summary: str) -> tuple[bool, str | None]:
        try:
            await self._tools.execute(
                "update_ticket",
                {"status": _TICKET_STATUS_OF[kind], "resolution_notes": summary[:4000]},
            )
            if kind == "callback" and "add_ticket_note" in self._tools.names:
                await self._tools.execute("add_ticket_note", {"text": summary[:2000]})
        except (ToolError, OSError, TimeoutError) as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return True, None

    # ------------------------------------------------------------ helpers

    def _render(self, text: str | None) -> str:
        if not text:
            return ""
        variables = {**self._context, **self._saved}
        try:
            return text.format_map(variables)
        except (KeyError, IndexError, AttributeError) as exc:
            raise WorkflowError(
                f"{self.workflow.source}: text {text!r} needs {exc} which this call does not have"
            ) from None

    def _log(self, step: Step, kind: str, detail: str = "") -> None:
        self.transcript.append(TranscriptEntry(self.workflow.name, step.id, kind, detail))


def _ignore_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("preparing the classifier failed", exc_info=task.exception())


def _matches(result: Any, when: Mapping[str, Any]) -> bool:
    if not isinstance(result, Mapping):
        return False
    for name, expected in when.items():
        value = result.get(name)
        if isinstance(expected, list):
            if value not in expected:
                return False
        elif value != expected:
            return False
    return True


def _brief(result: Any) -> str:
    if isinstance(result, Mapping):
        return ", ".join(f"{k} {v}" for k, v in result.items() if k != "lane" and v is not None)
    if isinstance(result, list) and all(isinstance(r, Mapping) for r in result):
        return "; ".join(" ".join(str(v) for v in r.values()) for r in result)
    return json.dumps(result, default=str)[:200]


__all__ = [
    "Classifier",
    "OffTopicHook",
    "Outcome",
    "Phraser",
    "Prompt",
    "TranscriptEntry",
    "WorkflowRun",
]
