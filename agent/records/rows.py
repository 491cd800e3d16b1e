"""Mapping between the record dataclasses and the ORM rows."""

from __future__ import annotations

from agent.records.models import Call, ToolCall, Turn
from agent.records.schema import CallRecord, ToolCallRecord, TurnRecord


def apply_header(call: Call, record: CallRecord) -> None:
    call.direction = record.direction
    call.caller = record.caller
    call.callee = record.callee
    call.agent_id = record.agent_id
    call.agent_name = record.agent_name
    call.started_at = record.started_at
    call.answered_at = record.answered_at
    call.ended_at = record.ended_at
    call.end_reason = record.end_reason
    call.outcome = record.outcome
    call.error = record.error
    call.recording_path = record.recording_path
    call.extra = dict(record.metadata)


def apply_turn(row: Turn, turn: TurnRecord) -> None:
    row.turn_index = turn.index
    row.speaker = turn.speaker
    row.text = turn.text
    row.heard_text = turn.heard_text
    row.started_at = turn.started_at
    row.ended_at = turn.ended_at
    row.interrupted = turn.interrupted
    row.latency_trace = dict(turn.latency_trace)
    row.turn_latency_ms = turn.turn_latency_ms
    row.stt_ms = turn.stt_ms
    row.llm_ttft_ms = turn.llm_ttft_ms
    row.tts_ttfa_ms = turn.tts_ttfa_ms


def tool_call_row(call_id: str, call: ToolCallRecord) -> ToolCall:
    return ToolCall(
        call_id=call_id,
        turn_index=call.turn_index,
        name=call.name,
        arguments=dict(call.arguments),
        result=call.result,
        ok=call.ok,
        error=call.error,
        duration_ms=call.duration_ms,
        started_at=call.started_at,
    )


def header_from_row(call: Call) -> CallRecord:
    return CallRecord(
        call_id=call.id,
        direction=call.direction,  # type: ignore[arg-type]  # CHECK constraint guarantees it
        caller=call.caller,
        callee=call.callee,
        agent_id=call.agent_id,
        agent_name=call.agent_name,
        started_at=call.started_at,
        answered_at=call.answered_at,
        ended_at=call.ended_at,
        end_reason=call.end_reason,
        outcome=call.outcome,
        error=call.error,
        recording_path=call.recording_path,
        metadata=dict(call.extra or {}),
    )


def turn_from_row(row: Turn) -> TurnRecord:
    return TurnRecord(
        index=row.turn_index,
        speaker=row.speaker,  # type: ignore[arg-type]
        text=row.text,
        heard_text=row.heard_text,
        started_at=row.started_at,
        ended_at=row.ended_at,
        interrupted=row.interrupted,
        latency_trace=dict(row.latency_trace or {}),
        turn_latency_ms=row.turn_latency_ms,
        stt_ms=row.stt_ms,
        llm_ttft_ms=row.llm_ttft_ms,
        tts_ttfa_ms=row.tts_ttfa_ms,
    )


def tool_call_from_row(row: ToolCall) -> ToolCallRecord:
    return ToolCallRecord(
        turn_index=row.turn_index,
        name=row.name,
        arguments=dict(row.arguments or {}),
        result=row.result,
        ok=row.ok,
        error=row.error,
        duration_ms=row.duration_ms,
        started_at=row.started_at,
    )
