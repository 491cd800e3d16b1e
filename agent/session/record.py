"""What a call leaves behind: a plain-data record, handed to a RecordSink at call end.

The session builds it as the call goes and hands it over in a `finally`, so a record
exists whatever happened (model failure, hang-up, crash of the session itself).
Times in it are seconds since the call was answered (`*_s`) plus the wall-clock
start, so the persistence layer needs nothing from the session.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from agent.session.trace import TurnTrace

Speaker = Literal["caller", "agent"]
# speech: an ordinary turn; greeting; backchannel: "mm-hm" while the agent spoke;
# holding / apology / prompt / goodbye: pre-synthesized lines.
EntryKind = Literal["speech", "greeting", "backchannel", "holding", "apology", "prompt", "goodbye"]
Outcome = Literal[
    "in_progress",
    "completed",  # the caller hung up after a conversation
    "caller_silent",  # silence prompts went unanswered; we hung up
    "max_duration",  # maximum call length reached
    "failed",  # a model kept failing; we apologised and ended the call
    "escalated",  # the escalation hook took the call over, or a workflow escalated
    "error",  # the session itself broke (a bug); the record says what
    # A workflow-directed call (agent/session/director.py) ended with its outcome:
    "resolved",  # the workflow fixed the problem
    "callback",  # a callback was booked
]


@dataclass
class TranscriptEntry:
    speaker: Speaker
    text: str  # for the agent: what the caller actually heard
    start_s: float
    end_s: float
    kind: EntryKind = "speech"
    interrupted: bool = False  # agent speech cut off by barge-in
    intended_text: str | None = None  # the full text, when interrupted


@dataclass
class ToolCallRecord:
    turn: int
    call_id: str
    name: str
    arguments: str
    result: str
    error: str | None
    start_s: float
    end_s: float


@dataclass
class SessionError:
    stage: str  # "stt" | "llm" | "tts" | "tool" | "session"
    message: str
    at_s: float
    retried: bool


@dataclass
class SessionEvent:
    kind: str  # "barge_in", "backchannel_resume", "silence_prompt", ...
    at_s: float
    detail: str = ""
    monotonic: float = 0.0


@dataclass
class CallRecord:
    call_id: str
    caller: str
    callee: str
    direction: str
    started_at: dt.datetime  # UTC, when the session started on the answered call
    agent_name: str = ""
    ended_at: dt.datetime | None = None
    duration_s: float = 0.0
    transcript: list[TranscriptEntry] = field(default_factory=list)
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    turns: list[TurnTrace] = field(default_factory=list)
    errors: list[SessionError] = field(default_factory=list)
    events: list[SessionEvent] = field(default_factory=list)
    outcome: Outcome = "in_progress"
    end_reason: str | None = None  # telephony EndReason value
    # Workflow-directed calls: {name, outcome, steps, tried, ticket_id, ticket_updated, ...}
    workflow: dict[str, Any] | None = None

    def said(self, speaker: Speaker) -> list[str]:
        return [e.text for e in self.transcript if e.speaker == speaker and e.text]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: datetimes as ISO 8601, traces with their per-stage milliseconds."""
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["ended_at"] = self.ended_at.isoformat() if self.ended_at else None
        data["turns"] = [turn.to_dict() for turn in self.turns]
        return data


@runtime_checkable
class RecordSink(Protocol):
    """Receives every finished call's record (persistence, metrics, webhooks)."""

    async def on_call_end(self, record: CallRecord) -> None: ...
