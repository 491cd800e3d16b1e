"""The call record's input shape: plain dataclasses the call session fills in.

Nothing here touches a database, so the session can build records without
importing SQLAlchemy. `validate_*` turn a malformed record into an
`InvalidRecord` that names the field, before anything is written.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from agent.records.errors import InvalidRecord

Direction = Literal["inbound", "outbound"]
Speaker = Literal["caller", "agent"]

DIRECTIONS: tuple[str, ...] = ("inbound", "outbound")
SPEAKERS: tuple[str, ...] = ("caller", "agent")
CALL_ID_MAX_LEN = 64


def new_call_id() -> str:
    return uuid.uuid4().hex


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(kw_only=True)
class TurnRecord:
    """One side's utterance. `index` orders the turns of a call (0, 1, 2, ...)."""

    index: int
    speaker: Speaker
    text: str
    # What the caller actually heard of an agent turn (cut short by barge-in).
    heard_text: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    interrupted: bool = False
    # Stage name -> value, as the session measured it (kept whole, as JSON).
    latency_trace: dict[str, Any] = field(default_factory=dict)
    # The numbers people filter and chart on, also kept as columns.
    turn_latency_ms: float | None = None
    stt_ms: float | None = None
    llm_ttft_ms: float | None = None
    tts_ttfa_ms: float | None = None


@dataclass(kw_only=True)
class ToolCallRecord:
    """A tool the agent called during turn `turn_index`."""

    turn_index: int
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    ok: bool = True
    error: str | None = None
    duration_ms: float | None = None
    started_at: datetime | None = None


@dataclass(kw_only=True)
class CallRecord:
    """Everything that happened on one call. Timestamps are timezone-aware."""

    call_id: str = field(default_factory=new_call_id)
    direction: Direction = "inbound"
    caller: str = ""
    callee: str = ""
    agent_id: str | None = None
    agent_name: str | None = None
    started_at: datetime = field(default_factory=utc_now)
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    end_reason: str | None = None
    outcome: str | None = None
    error: str | None = None
    recording_path: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    turns: list[TurnRecord] = field(default_factory=list)
    tool_calls: list[ToolCallRecord] = field(default_factory=list)


# ---------------------------------------------------------------- validation


def _check_time(where: str, value: datetime | None) -> None:
    if value is None:
        return
    if not isinstance(value, datetime):
        raise InvalidRecord(f"{where}: expected a datetime, got {type(value).__name__}")
    # A naive time is ambiguous (local? UTC?): refuse it rather than store it wrong.
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidRecord(f"{where}: datetime must be timezone-aware, got naive {value!r}")


def _check_json(where: str, value: Any) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRecord(f"{where}: not JSON-serialisable ({exc})") from None


def _check_number(where: str, value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRecord(f"{where}: expected a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise InvalidRecord(f"{where}: must be finite, got {value}")


def _check_index(where: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRecord(f"{where}: expected an integer >= 0, got {value!r}")


def validate_turn(turn: TurnRecord, where: str = "turn") -> None:
    _check_index(f"{where}.index", turn.index)
    if turn.speaker not in SPEAKERS:
        raise InvalidRecord(f"{where}.speaker: must be one of {SPEAKERS}, got {turn.speaker!r}")
    if not isinstance(turn.text, str):
        raise InvalidRecord(f"{where}.text: expected a string")
    if turn.heard_text is not None and not isinstance(turn.heard_text, str):
        raise InvalidRecord(f"{where}.heard_text: expected a string or None")
    _check_time(f"{where}.started_at", turn.started_at)
    _check_time(f"{where}.ended_at", turn.ended_at)
    _check_json(f"{where}.latency_trace", turn.latency_trace)
    for name in ("turn_latency_ms", "stt_ms", "llm_ttft_ms", "tts_ttfa_ms"):
        _check_number(f"{where}.{name}", getattr(turn, name))


def validate_tool_call(call: ToolCallRecord, where: str = "tool_call") -> None:
    _check_index(f"{where}.turn_index", call.turn_index)
    if not isinstance(call.name, str) or not call.name:
        raise InvalidRecord(f"{where}.name: expected a non-empty string")
    if not isinstance(call.arguments, dict):
        raise InvalidRecord(f"{where}.arguments: expected a JSON object (dict)")
    _check_json(f"{where}.arguments", call.arguments)
    _check_json(f"{where}.result", call.result)
    _check_number(f"{where}.duration_ms", call.duration_ms)
    _check_time(f"{where}.started_at", call.started_at)


def validate_call_header(record: CallRecord) -> None:
    """The call's own fields, without its turns and tool calls."""
    cid = record.call_id
    if not isinstance(cid, str) or not cid or len(cid) > CALL_ID_MAX_LEN:
        raise InvalidRecord(f"call_id: expected 1..{CALL_ID_MAX_LEN} characters, got {cid!r}")
    if record.direction not in DIRECTIONS:
        raise InvalidRecord(f"direction: must be one of {DIRECTIONS}, got {record.direction!r}")
    if record.started_at is None:
        raise InvalidRecord("started_at: required")
    for name in ("started_at", "answered_at", "ended_at"):
        _check_time(name, getattr(record, name))
    if not isinstance(record.metadata, dict):
        raise InvalidRecord("metadata: expected a JSON object (dict)")
    _check_json("metadata", record.metadata)


def validate_record(record: CallRecord) -> None:
    validate_call_header(record)
    seen: set[int] = set()
    for i, turn in enumerate(record.turns):
        validate_turn(turn, f"turns[{i}]")
        if turn.index in seen:
            raise InvalidRecord(f"turns[{i}].index: duplicate turn index {turn.index}")
        seen.add(turn.index)
    for i, call in enumerate(record.tool_calls):
        validate_tool_call(call, f"tool_calls[{i}]")
