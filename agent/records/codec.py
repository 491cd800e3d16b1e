"""CallRecord <-> JSON-ready dicts, for the spool files."""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import datetime
from typing import Any

from agent.records.errors import InvalidRecord
from agent.records.schema import CallRecord, ToolCallRecord, TurnRecord

FORMAT_VERSION = 1

_TIME_FIELDS = {"started_at", "answered_at", "ended_at"}


def _encode_times(data: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (v.isoformat() if isinstance(v, datetime) else v)
        for k, v in data.items()
        if k not in ("turns", "tool_calls")
    }


def _decode_times(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    for key in _TIME_FIELDS & out.keys():
        if out[key] is not None:
            out[key] = datetime.fromisoformat(out[key])
    return out


def _only_known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    known = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in known}


def record_to_dict(record: CallRecord) -> dict[str, Any]:
    raw = asdict(record)
    return {
        "format": FORMAT_VERSION,
        "call": _encode_times(raw),
        "turns": [_encode_times(t) for t in raw["turns"]],
        "tool_calls": [_encode_times(c) for c in raw["tool_calls"]],
    }


def record_from_dict(data: dict[str, Any]) -> CallRecord:
    if data.get("format") != FORMAT_VERSION:
        raise InvalidRecord(f"spooled record has unknown format {data.get('format')!r}")
    try:
        turns = [TurnRecord(**_only_known(TurnRecord, _decode_times(t))) for t in data["turns"]]
        tool_calls = [
            ToolCallRecord(**_only_known(ToolCallRecord, _decode_times(c)))
            for c in data["tool_calls"]
        ]
        header = _only_known(CallRecord, _decode_times(data["call"]))
        return CallRecord(**header, turns=turns, tool_calls=tool_calls)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRecord(f"spooled record is malformed: {exc}") from None
