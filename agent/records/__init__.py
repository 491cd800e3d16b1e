"""Call records: what happened on every call, persisted (SQLAlchemy 2 + Alembic).

    store = CallRecordStore()            # $DATABASE_URL, else $TRUNKLINE_HOME/trunkline.db
    await store.start()                  # migrates, replays anything spooled
    await store.start_call(CallRecord(caller="sip:alice@127.0.0.1", ...))
    await store.add_turn(call_id, TurnRecord(index=0, speaker="caller", text="hi"))
    await store.finish_call(call_id, end_reason="caller_hangup", outcome="resolved")

`schema` (the dataclasses) imports nothing heavy; the store is imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.records.errors import (
    DatabaseConfigError,
    InvalidQuery,
    InvalidRecord,
    RecordError,
    RecordNotSaved,
    UnknownCall,
)
from agent.records.schema import CallRecord, ToolCallRecord, TurnRecord

if TYPE_CHECKING:
    from agent.records.store import CallRecordStore, WriteResult

__all__ = [
    "CallRecord",
    "CallRecordStore",
    "DatabaseConfigError",
    "InvalidQuery",
    "InvalidRecord",
    "RecordError",
    "RecordNotSaved",
    "ToolCallRecord",
    "TurnRecord",
    "UnknownCall",
    "WriteResult",
]


def __getattr__(name: str) -> Any:
    # SQLAlchemy and Alembic load only when the store is actually used.
    if name in ("CallRecordStore", "WriteResult"):
        from agent.records import store

        return getattr(store, name)
    raise AttributeError(name)
