"""The call session: one phone call from answer to hang-up (see session.py)."""

from agent.session.config import FallbackTexts, SessionOptions
from agent.session.record import (
    CallRecord,
    RecordSink,
    SessionError,
    SessionEvent,
    ToolCallRecord,
    TranscriptEntry,
)
from agent.session.reply import ToolExecutor
from agent.session.session import (
    CallSession,
    Engines,
    EscalateHook,
    PreparedSession,
    answer_and_run,
    prepare_session,
)
from agent.session.trace import TurnTrace

__all__ = [
    "CallRecord",
    "CallSession",
    "Engines",
    "EscalateHook",
    "FallbackTexts",
    "PreparedSession",
    "RecordSink",
    "SessionError",
    "SessionEvent",
    "SessionOptions",
    "ToolCallRecord",
    "ToolExecutor",
    "TranscriptEntry",
    "TurnTrace",
    "answer_and_run",
    "prepare_session",
]
