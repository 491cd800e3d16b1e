"""From the session's CallRecord to the persisted one, plus the call metrics.

The session's record is rich plain data (transcript entries with kinds, per-turn
traces, events, errors); the store's schema has rows for utterances and a JSON
`metadata` column. Rows carry what people query (who said what, latencies), the
metadata keeps the session's full view so `GET /api/calls/{id}` can show it as is.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
from typing import Any

from agent import records
from agent.metrics import STAGES as METRIC_STAGES
from agent.metrics import CallMetrics
from agent.session import CallRecord as SessionRecord
from agent.session import TurnTrace

log = logging.getLogger(__name__)

# (metric stage, from trace stage, to trace stage)
_METRIC_SPANS = (
    ("end_of_turn", "speech_end", "turn_end"),
    ("stt", "turn_end", "stt_done"),
    ("llm_ttft", "stt_done", "llm_first_token"),
    ("first_sentence", "llm_first_token", "first_sentence"),
    ("tts_ttfa", "first_sentence", "tts_first_audio"),
    ("send", "tts_first_audio", "first_audio_written"),
)
assert {span[0] for span in _METRIC_SPANS} == set(METRIC_STAGES)


def record_id(sip_call_id: str) -> str:
    """The store key of a call: its SIP Call-ID, or a digest of one too long to be a key."""
    if 0 < len(sip_call_id) <= records.schema.CALL_ID_MAX_LEN:
        return sip_call_id
    return "sha256-" + hashlib.sha256(sip_call_id.encode()).hexdigest()[:48]


def trace_view(trace: TurnTrace) -> dict[str, Any]:
    """One turn as the API shows it: texts, stages in ms from end of caller speech."""
    return {
        "index": trace.index,
        "caller_text": trace.caller_text,
        "agent_text": trace.agent_text,
        "turn_latency_ms": trace.turn_latency_ms,
        "stages_ms": trace.stages_ms(),
        "end_of_turn_reason": trace.end_of_turn_reason,
        "holding_played": trace.holding_played,
        "interrupted": trace.interrupted,
        "error": trace.error,
        # raw monotonic stamps: same clock as a client on this host (benchmarks)
        "speech_end_monotonic": trace.speech_end,
        "first_audio_written_monotonic": trace.first_audio_written,
    }


def header(record: SessionRecord) -> records.CallRecord:
    """The store's record for a call just answered (no turns yet)."""
    return records.CallRecord(
        call_id=record_id(record.call_id),
        direction="outbound" if record.direction == "outbound" else "inbound",
        caller=record.caller,
        callee=record.callee,
        agent_name=record.agent_name or None,
        started_at=record.started_at,
        answered_at=record.started_at,
        metadata={"sip_call_id": record.call_id},
    )


def to_store_record(record: SessionRecord) -> records.CallRecord:
    out = header(record)
    out.ended_at = record.ended_at or dt.datetime.now(dt.UTC)
    out.end_reason = record.end_reason
    out.outcome = record.outcome
    if record.errors:
        out.error = "; ".join(f"{e.stage}: {e.message}" for e in record.errors)[:2000]
    traces = [trace_view(t) for t in record.turns]
    out.metadata.update(
        duration_s=record.duration_s,
        transcript=[dataclasses.asdict(e) for e in record.transcript],
        turns=traces,
        events=[
            {"kind": e.kind, "at_s": e.at_s, "detail": e.detail, "monotonic": e.monotonic}
            for e in record.events
        ],
        errors=[dataclasses.asdict(e) for e in record.errors],
        # workflow-directed calls (contract 2): name, outcome, steps, tried, ticket_id, ...
        workflow=record.workflow,
    )
    unclaimed = list(record.turns)
    for index, entry in enumerate(record.transcript):
        turn = records.TurnRecord(
            index=index,
            speaker=entry.speaker,
            text=(entry.intended_text or entry.text) if entry.interrupted else entry.text,
            heard_text=entry.text if entry.speaker == "agent" else None,
            started_at=record.started_at + dt.timedelta(seconds=entry.start_s),
            ended_at=record.started_at + dt.timedelta(seconds=entry.end_s),
            interrupted=entry.interrupted,
        )
        # A caller utterance carries the latency of the turn it started.
        trace = _claim(unclaimed, entry.text) if entry.speaker == "caller" else None
        if trace is not None:
            stages = trace.stages_ms()
            turn.latency_trace = {"stages_ms": stages, "end_of_turn": trace.end_of_turn_reason}
            turn.turn_latency_ms = trace.turn_latency_ms
            turn.stt_ms = _span(trace, "turn_end", "stt_done")
            turn.llm_ttft_ms = _span(trace, "stt_done", "llm_first_token")
            turn.tts_ttfa_ms = _span(trace, "first_sentence", "tts_first_audio")
        out.turns.append(turn)
    for number, call in enumerate(record.tool_calls):
        out.tool_calls.append(
            records.ToolCallRecord(
                turn_index=max(0, call.turn),
                name=call.name or f"tool-{number}",
                arguments={"raw": call.arguments},
                result=call.result,
                ok=call.error is None,
                error=call.error,
                duration_ms=round((call.end_s - call.start_s) * 1000, 1),
                started_at=record.started_at + dt.timedelta(seconds=call.start_s),
            )
        )
    return out


def _claim(traces: list[TurnTrace], caller_text: str) -> TurnTrace | None:
    for i, trace in enumerate(traces):
        if trace.caller_text and trace.caller_text.strip() == caller_text.strip():
            return traces.pop(i)
    return None


def _span(trace: TurnTrace, start: str, end: str) -> float | None:
    a, b = getattr(trace, start), getattr(trace, end)
    return None if a is None or b is None else round((b - a) * 1000, 1)


def observe(metrics: CallMetrics, record: SessionRecord) -> None:
    """Feed the Prometheus metrics from a finished call."""
    for trace in record.turns:
        if trace.turn_latency_ms is not None:
            metrics.observe_turn_latency(trace.turn_latency_ms / 1000)
        for stage, start, end in _METRIC_SPANS:
            value = _span(trace, start, end)
            if value is not None and value >= 0:
                metrics.observe_stage(stage, value / 1000)
    for event in record.events:
        if event.kind == "barge_in":
            metrics.barge_in()
    for error in record.errors:
        if error.stage in ("stt", "llm", "tts"):
            kind = "timeout" if "within" in error.message else "failure"
            metrics.model_error(error.stage, kind)


class StoreSink:
    """The session's RecordSink: persist (database, else spool) and count."""

    def __init__(self, store: Any, metrics: CallMetrics) -> None:
        self.store = store
        self.metrics = metrics

    async def on_call_start(self, record: SessionRecord) -> None:
        self.metrics.call_started()
        try:
            await self.store.start_call(header(record))
        except Exception:  # the final save still comes; never refuse a call for this
            log.exception("call %s: could not record its start", record.call_id)

    async def on_call_end(self, record: SessionRecord) -> None:
        reason = record.end_reason or "unknown"
        try:
            self.metrics.call_ended(reason)
        except ValueError:
            self.metrics.call_ended("unknown")
        try:
            observe(self.metrics, record)
        except Exception:
            log.exception("call %s: metrics failed", record.call_id)
        result = await self.store.save(to_store_record(record))
        log.info("call %s record %s", record.call_id, result)
