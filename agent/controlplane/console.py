"""Text test console: talk to an agent in text with the brain its calls use.

    POST   /api/agents/{agent_id}/console                      {"message", "session_id"?}
    GET    /api/agents/{agent_id}/console/{session_id}         the conversation so far
    POST   /api/agents/{agent_id}/console/{session_id}/goals   judge the goals now
    DELETE /api/agents/{agent_id}/console/{session_id}

Same brain as a call: the session options a call to this agent gets
(agent/app/agent_directory.py: compiled system prompt, greeting, limits), the same LLM
engine and request settings, the same history bounds (ConversationHistory with
`max_history_turns`), the same tool rounds, and the reply cut into the pieces a call
would speak. The definition is re-read on every message, so an instruction edited
through the API applies to the next message. Goal progress is judged on demand
(`evaluate_goals`, or the /goals route) by agent/controlplane/goal_tracking.py;
the console never sends completion webhooks.

Sessions live in this process's memory: at most `max_sessions`, each dropped after
`idle_ttl_s` without a message. Admin API key required.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from agent.app.agent_directory import LoadedAgent, session_options
from agent.controlplane import schemas, service
from agent.controlplane.api import AgentId, _ErrorMappingRoute
from agent.controlplane.auth import require_scope
from agent.controlplane.db import ControlPlaneStore
from agent.controlplane.errors import NotFound
from agent.controlplane.goal_tracking import (
    GoalEvaluator,
    LLMFailed,
    TrackedGoal,
    goals_of_agent,
    transcript_text,
)
from agent.controlplane.models import AgentConfig
from agent.prompting.loader import load_agent_definition
from agent.session.clauses import SpeechSplitter, speakable
from agent.session.config import SessionOptions
from agent.session.history import ConversationHistory
from serving.base import BadInput, LLMEngine, Message, Tool, ToolCall
from serving.llm.tool_calls import tool_request_message, tool_result_message

ToolExecutor = Callable[[ToolCall], Awaitable[str]]
# An engine, or a function giving it once the models are loaded (None until then).
LLMSource = LLMEngine | Callable[[], LLMEngine | None]
OptionsSource = SessionOptions | Callable[[], SessionOptions | None]

MAX_MESSAGE_CHARS = 4000
SESSION_ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"


class ConsoleBusy(Exception):
    """A message for this session is still being answered (409)."""


class ConsoleFull(Exception):
    """Too many console sessions are open (429)."""


class LLMUnavailable(Exception):
    """The LLM failed or did not answer in time (503)."""


class LLMRefused(Exception):
    """The engine refused the request itself, e.g. a conversation longer than its context
    (422: retrying the same request cannot help)."""


# ---------------------------------------------------------------- API shapes

ConsoleText = Annotated[
    str,
    Field(min_length=1, max_length=MAX_MESSAGE_CHARS, pattern=r"\S"),
    AfterValidator(schemas.db_safe_text),
]
SessionId = Annotated[str, Field(pattern=SESSION_ID_PATTERN)]
ConsoleSessionId = Annotated[
    str, Path(pattern=SESSION_ID_PATTERN, description="The console session's id.")
]


class ConsoleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: ConsoleText = Field(description="What the caller says (text).")
    session_id: SessionId | None = Field(
        default=None, description="Continue this conversation; omit to start a new one."
    )
    evaluate_goals: bool = Field(
        default=False, description="Judge the agent's goals on the conversation after replying."
    )


class ConsoleToolCall(BaseModel):
    name: str
    arguments: Any
    result: Any
    error: str | None


class GoalProgress(BaseModel):
    goals: list[str] = Field(description="The agent's active goals, most important first.")
    evaluated: bool = Field(description="Whether `results` judge the conversation as it is now.")
    results: list[dict[str, Any]] | None = Field(
        description="Per goal: achieved, data, missing, criteria (name, met, reason), error."
    )
    error: str | None = Field(default=None, description="Why the goals were not judged now.")


class ConsoleOut(BaseModel):
    session_id: str
    greeting: str | None = Field(description="What the agent said first (new sessions only).")
    reply: str
    tool_calls: list[ConsoleToolCall]
    goals: GoalProgress
    turn: int


class ConsoleLine(BaseModel):
    speaker: str
    text: str


class ConsoleSessionOut(BaseModel):
    session_id: str
    agent_id: int
    transcript: list[ConsoleLine]
    goals: GoalProgress


# ---------------------------------------------------------------- sessions


@dataclass
class ConsoleSession:
    id: str
    agent_id: int
    history: ConversationHistory
    last_used: float
    transcript: list[tuple[str, str]] = field(default_factory=list)
    goal_names: list[str] = field(default_factory=list)
    goal_results: list[dict[str, Any]] | None = None
    goals_turn: int = -1  # the turn count the results were judged at
    turns: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def progress(self, error: str | None = None) -> GoalProgress:
        return GoalProgress(
            goals=self.goal_names,
            evaluated=self.goal_results is not None and self.goals_turn == self.turns,
            results=self.goal_results,
            error=error,
        )


class ConsoleSessions:
    """The open sessions, bounded in count and idle time (checked on every access)."""

    def __init__(
        self,
        *,
        max_sessions: int = 100,
        idle_ttl_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_sessions < 1 or idle_ttl_s <= 0:
            raise ValueError("max_sessions must be >= 1 and idle_ttl_s > 0")
        self.max_sessions = max_sessions
        self.idle_ttl_s = idle_ttl_s
        self._clock = clock
        self._sessions: dict[str, ConsoleSession] = {}

    def __len__(self) -> int:
        self._expire()
        return len(self._sessions)

    def get(self, agent_id: int, session_id: str) -> ConsoleSession:
        self._expire()
        session = self._sessions.get(session_id)
        # Another agent's session is "not found" too: ids are not shared across agents.
        if session is None or session.agent_id != agent_id:
            raise NotFound(
                f"console session {session_id!r} of agent {agent_id} not found "
                f"(sessions end after {self.idle_ttl_s:g} s without a message)"
            )
        session.last_used = self._clock()
        return session

    def create(self, agent_id: int, history: ConversationHistory) -> ConsoleSession:
        self._expire()
        if len(self._sessions) >= self.max_sessions:
            raise ConsoleFull(
                f"{self.max_sessions} console sessions are open; delete one "
                f"(DELETE .../console/{{session_id}}) or wait {self.idle_ttl_s:g} s"
            )
        session = ConsoleSession(
            id=secrets.token_urlsafe(16),
            agent_id=agent_id,
            history=history,
            last_used=self._clock(),
        )
        self._sessions[session.id] = session
        return session

    def delete(self, agent_id: int, session_id: str) -> None:
        self.get(agent_id, session_id)
        del self._sessions[session_id]

    def discard(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def touch(self, session: ConsoleSession) -> None:
        session.last_used = self._clock()

    def _expire(self) -> None:
        cutoff = self._clock() - self.idle_ttl_s
        for sid in [s.id for s in self._sessions.values() if s.last_used < cutoff]:
            # A session answering right now is in use, however long the LLM takes.
            if not self._sessions[sid].lock.locked():
                del self._sessions[sid]


# ---------------------------------------------------------------- the brain


@dataclass(frozen=True)
class AgentBrain:
    """What a call to this agent would get: its options and its goals."""

    options: SessionOptions
    goals: list[TrackedGoal]


async def load_brain(store: ControlPlaneStore, agent_id: int, base: SessionOptions) -> AgentBrain:
    async with store.session() as s:
        agent = await service.get(s, AgentConfig, agent_id)  # NotFound -> 404
        loaded = LoadedAgent(
            id=agent.id,
            definition=await load_agent_definition(s, agent_id),
            voice=agent.voice_id,
            custom_settings=dict(agent.custom_settings or {}),
        )
        goals = await goals_of_agent(s, agent_id)
    return AgentBrain(session_options(loaded, base), goals)


class ConsoleReplier:
    """One text turn: LLM rounds with tools, as ReplyPipeline does for a call, minus audio."""

    def __init__(
        self,
        *,
        tools: Sequence[Tool] = (),
        tool_executor: ToolExecutor | None = None,
        timeout_s: float = 180.0,
    ) -> None:
        self.tools = list(tools)
        self.tool_executor = tool_executor
        self.timeout_s = timeout_s

    async def reply(
        self, llm: LLMEngine, options: SessionOptions, conversation: list[Message]
    ) -> tuple[str, list[Message], list[ConsoleToolCall]]:
        """(reply text, messages to add to the history, tool calls); LLMUnavailable."""
        try:
            return await asyncio.wait_for(self._rounds(llm, options, conversation), self.timeout_s)
        except TimeoutError:
            raise LLMUnavailable(f"the LLM gave no reply within {self.timeout_s:g} s") from None
        except asyncio.CancelledError:
            raise
        except BadInput as exc:
            raise LLMRefused(
                f"the LLM refused the conversation ({exc}); start a new session or send a "
                "shorter message"
            ) from exc
        except Exception as exc:  # any engine failure: a dead server, a bad model
            raise LLMUnavailable(f"the LLM failed: {type(exc).__name__}: {exc}") from exc

    async def _rounds(
        self, llm: LLMEngine, options: SessionOptions, conversation: list[Message]
    ) -> tuple[str, list[Message], list[ConsoleToolCall]]:
        conversation = list(conversation)
        added: list[Message] = []
        calls_made: list[ConsoleToolCall] = []
        spoken: list[str] = []
        for round_index in range(options.max_tool_rounds + 1):
            last_round = round_index == options.max_tool_rounds
            tools = self.tools if self.tools and not last_round else None
            text, calls = await self._round(llm, options, conversation, tools, spoken)
            if not calls:
                break
            asked = tool_request_message(text, calls)
            conversation.append(asked)
            added.append(asked)
            for call in calls:
                result, error = await self._run_tool(options, call)
                calls_made.append(
                    ConsoleToolCall(
                        name=call.name,
                        arguments=_json_or_text(call.arguments),
                        result=_json_or_text(result),
                        error=error,
                    )
                )
                answer = tool_result_message(call, result)
                conversation.append(answer)
                added.append(answer)
        return " ".join(spoken), added, calls_made

    async def _round(
        self,
        llm: LLMEngine,
        options: SessionOptions,
        conversation: list[Message],
        tools: list[Tool] | None,
        spoken: list[str],
    ) -> tuple[str, list[ToolCall]]:
        splitter = SpeechSplitter()
        text: list[str] = []
        calls: list[ToolCall] = []

        def say(pieces: list[str]) -> None:
            # What a call would hand to the TTS: markdown stripped, bare numbers dropped.
            for piece in map(speakable, pieces):
                if any(c.isalnum() for c in piece):
                    spoken.append(piece)

        stream = llm.chat(
            conversation,
            tools=tools,
            max_tokens=options.max_tokens,
            temperature=options.temperature,
        )
        async for delta in stream:
            if delta.text:
                text.append(delta.text)
                say(splitter.push(delta.text))
            if delta.tool_call is not None:
                calls.append(delta.tool_call)
        say(splitter.flush())
        return "".join(text), calls

    async def _run_tool(self, options: SessionOptions, call: ToolCall) -> tuple[str, str | None]:
        error: str | None = None
        if self.tool_executor is None:
            error = "no tool executor is configured"
        else:
            try:
                return (
                    await asyncio.wait_for(self.tool_executor(call), options.tool_timeout_s),
                    None,
                )
            except TimeoutError:
                error = f"timed out after {options.tool_timeout_s:g} s"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a tool failing is news for the LLM, not a crash
                error = f"{type(exc).__name__}: {exc}"
        return json.dumps({"error": f"tool {call.name} failed: {error}"}), error


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


# ---------------------------------------------------------------- the routes


def _busy() -> HTTPException:
    return HTTPException(
        status.HTTP_409_CONFLICT, "a message for this session is still being answered"
    )


def _llm_down(exc: Exception) -> HTTPException:
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc))


def build_console_router(
    store: ControlPlaneStore,
    llm: LLMSource,
    *,
    base_options: OptionsSource | None = None,
    tools: Sequence[Tool] = (),
    tool_executor: ToolExecutor | None = None,
    sessions: ConsoleSessions | None = None,
    evaluator: GoalEvaluator | None = None,
    reply_timeout_s: float = 180.0,
) -> APIRouter:
    """The console routes (mount under /api). `llm`: the engine calls use, or a function
    returning it (None while the models load: 503); `base_options`: the call settings'
    session options (limits, timeouts) or a function returning them, default
    SessionOptions(); `tools`/`tool_executor`: what the agent may call, as on a call."""
    open_sessions = sessions if sessions is not None else ConsoleSessions()
    replier = ConsoleReplier(tools=tools, tool_executor=tool_executor, timeout_s=reply_timeout_s)

    def brain_parts() -> tuple[LLMEngine, SessionOptions, GoalEvaluator]:
        engine = llm if isinstance(llm, LLMEngine) else llm()
        if engine is None:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "the agent's models are still loading; retry in a moment",
            )
        options = base_options() if callable(base_options) else base_options
        return engine, options or SessionOptions(), evaluator or GoalEvaluator(engine)

    router = APIRouter(
        route_class=_ErrorMappingRoute,
        tags=["console"],
        responses={
            401: {"description": "Missing, unknown or revoked API key"},
            403: {"description": "The API key's scope does not allow this"},
        },
    )
    admin = [Depends(require_scope(store, "admin"))]
    not_found: dict[int | str, dict[str, Any]] = {
        404: {"description": "No such agent or console session"}
    }
    responses: dict[int | str, dict[str, Any]] = {
        **not_found,
        409: {"description": "A message for this session is still being answered"},
        503: {"description": "The LLM failed, timed out or is still loading"},
    }

    async def evaluate(
        judge: GoalEvaluator, session: ConsoleSession, goals: list[TrackedGoal]
    ) -> None:
        transcript = transcript_text(session.transcript)
        try:
            results = [
                await judge.evaluate(goal, transcript, raise_llm_errors=True) for goal in goals
            ]
        except LLMFailed as exc:
            raise LLMUnavailable(str(exc)) from exc
        session.goal_results = results
        session.goals_turn = session.turns

    @router.post(
        "/agents/{agent_id}/console",
        dependencies=admin,
        responses={**responses, 429: {"description": "Too many console sessions are open"}},
    )
    async def console_message(agent_id: AgentId, body: ConsoleIn) -> ConsoleOut:
        """Say `message` to the agent; the reply is what a caller would hear."""
        engine, base, judge = brain_parts()
        brain = await load_brain(store, agent_id, base)
        options = brain.options
        greeting: str | None = None
        if body.session_id is None:
            history = ConversationHistory(options.system_prompt, options.max_history_turns)
            try:
                session = open_sessions.create(agent_id, history)
            except ConsoleFull as exc:
                raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, str(exc)) from None
            if options.greeting:  # a call starts with it, and it is in the LLM's history
                greeting = options.greeting
                history.add_agent_line(greeting)
                session.transcript.append(("agent", greeting))
        else:
            session = open_sessions.get(agent_id, body.session_id)
        if session.lock.locked():
            raise _busy()
        async with session.lock:
            session.goal_names = [g.name for g in brain.goals]
            # The definition may have changed since the last message: its prompt now.
            session.history.system = {"role": "system", "content": options.system_prompt}
            user: Message = {"role": "user", "content": body.message}
            try:
                reply, added, tool_calls = await replier.reply(
                    engine, options, session.history.messages([user])
                )
            except (LLMUnavailable, LLMRefused) as exc:
                if greeting is not None:  # nothing was said in it: no session to come back to
                    open_sessions.discard(session.id)
                if isinstance(exc, LLMRefused):
                    raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
                raise _llm_down(exc) from None
            session.history.add_turn([user, *added, {"role": "assistant", "content": reply}])
            session.transcript += [("caller", body.message), ("agent", reply)]
            session.turns += 1
            open_sessions.touch(session)
            goals_error = None
            if body.evaluate_goals and brain.goals:
                try:
                    await evaluate(judge, session, brain.goals)
                except LLMUnavailable as exc:  # the reply stands; the progress says why
                    goals_error = str(exc)
            return ConsoleOut(
                session_id=session.id,
                greeting=greeting,
                reply=reply,
                tool_calls=tool_calls,
                goals=session.progress(goals_error),
                turn=session.turns,
            )

    @router.get("/agents/{agent_id}/console/{session_id}", dependencies=admin, responses=not_found)
    async def console_session(agent_id: AgentId, session_id: ConsoleSessionId) -> ConsoleSessionOut:
        session = open_sessions.get(agent_id, session_id)
        return ConsoleSessionOut(
            session_id=session.id,
            agent_id=agent_id,
            transcript=[ConsoleLine(speaker=s, text=t) for s, t in session.transcript],
            goals=session.progress(),
        )

    @router.post(
        "/agents/{agent_id}/console/{session_id}/goals", dependencies=admin, responses=responses
    )
    async def console_goals(agent_id: AgentId, session_id: ConsoleSessionId) -> GoalProgress:
        """Judge the agent's goals on the conversation so far (no webhooks are sent)."""
        _, _, judge = brain_parts()
        session = open_sessions.get(agent_id, session_id)
        async with store.session() as s:
            goals = await goals_of_agent(s, agent_id)
        if session.lock.locked():
            raise _busy()
        async with session.lock:
            session.goal_names = [g.name for g in goals]
            if not goals:
                session.goal_results, session.goals_turn = [], session.turns
                return session.progress()
            try:
                await evaluate(judge, session, goals)
            except LLMUnavailable as exc:
                raise _llm_down(exc) from None
            return session.progress()

    @router.delete(
        "/agents/{agent_id}/console/{session_id}",
        status_code=204,
        dependencies=admin,
        responses=not_found,
    )
    async def delete_console_session(agent_id: AgentId, session_id: ConsoleSessionId) -> None:
        open_sessions.delete(agent_id, session_id)

    return router
