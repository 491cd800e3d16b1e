"""CallRecordStore: call records into the database, never lost.

Why the asyncio engine (SQLAlchemy's asyncio extension, aiosqlite / psycopg 3):
the store is awaited from the call session's event loop, and an async engine lets
a slow or dead database be bounded with `asyncio.wait_for` and cancelled with the
call, without parking a worker thread per write; the FastAPI control plane reuses
the same engine and models.

Writes are incremental (`start_call`, `add_turn`, `add_tool_call`, `finish_call`)
so a crash mid-call leaves what happened so far. The store keeps its own copy of
each live call; when a write fails it spools that whole copy as JSON, and later
replays it as an idempotent upsert (at start, every `retry_interval_s`, and on
the call's next write).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, event, or_, select
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import selectinload

from agent.records import migrate
from agent.records.config import async_url, configured_url, redact
from agent.records.errors import InvalidQuery, InvalidRecord, RecordNotSaved, UnknownCall
from agent.records.models import Call, ToolCall, Turn
from agent.records.rows import (
    apply_header,
    apply_turn,
    header_from_row,
    tool_call_from_row,
    tool_call_row,
    turn_from_row,
)
from agent.records.schema import (
    DIRECTIONS,
    CallRecord,
    ToolCallRecord,
    TurnRecord,
    utc_now,
    validate_call_header,
    validate_record,
    validate_tool_call,
    validate_turn,
)
from agent.records.spool import Spool
from models.paths import trunkline_home

if TYPE_CHECKING:
    from agent.metrics import CallMetrics

log = logging.getLogger(__name__)

# Errors that mean "the database is not there right now": keep the spool file and retry.
_UNAVAILABLE = (DisconnectionError, OSError, TimeoutError)
MAX_LIST_LIMIT = 1000


class _MarkedDown(ConnectionError):
    """Skipped the database: it failed moments ago (see `_db_down_until`)."""


class WriteResult(StrEnum):
    STORED = "stored"  # in the database
    SPOOLED = "spooled"  # in the spool directory, to be replayed


def default_spool_dir() -> Path:
    return trunkline_home() / "spool" / "calls"


def _is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, _UNAVAILABLE):
        return True
    # OperationalError / InterfaceError: connection refused, DB locked, file unopenable.
    return isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or type(exc).__name__ in ("OperationalError", "InterfaceError")
    )


def _enable_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")  # SQLite ignores FKs (and CASCADE) otherwise
    cursor.execute("PRAGMA journal_mode=WAL")  # the API can read while a call writes
    cursor.close()


async def _upsert_record(session: AsyncSession, record: CallRecord) -> None:
    """Make the database hold exactly `record` (idempotent: replays are safe)."""
    call = await session.get(Call, record.call_id)
    if call is None:
        call = Call(id=record.call_id)
        session.add(call)
    apply_header(call, record)
    await session.flush()
    await session.execute(delete(Turn).where(Turn.call_id == record.call_id))
    await session.execute(delete(ToolCall).where(ToolCall.call_id == record.call_id))
    for turn in record.turns:
        row = Turn(call_id=record.call_id)
        apply_turn(row, turn)
        session.add(row)
    session.add_all(tool_call_row(record.call_id, c) for c in record.tool_calls)


async def _upsert_turn(session: AsyncSession, call_id: str, turn: TurnRecord) -> None:
    row = await session.scalar(
        select(Turn).where(Turn.call_id == call_id, Turn.turn_index == turn.index)
    )
    if row is None:
        row = Turn(call_id=call_id)
        session.add(row)
    apply_turn(row, turn)


def _put_turn(record: CallRecord, turn: TurnRecord) -> None:
    """Replace the turn with the same index (e.g. heard_text set after barge-in), else append."""
    for i, existing in enumerate(record.turns):
        if existing.index == turn.index:
            record.turns[i] = turn
            return
    record.turns.append(turn)


class CallRecordStore:
    """Persist call records; see the module docstring. Use `async with` or start()/close()."""

    def __init__(
        self,
        url: str | None = None,
        *,
        spool_dir: Path | None = None,
        retry_interval_s: float = 30.0,
        write_timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        auto_migrate: bool = True,
        metrics: CallMetrics | None = None,
    ) -> None:
        self.url = configured_url(url)
        target = async_url(self.url)
        connect_args: dict[str, Any] = {}
        if target.get_backend_name() == "postgresql":
            connect_args["connect_timeout"] = max(1, round(connect_timeout_s))
        else:
            connect_args["timeout"] = connect_timeout_s  # SQLite busy timeout
        self.engine: AsyncEngine = create_async_engine(
            target, connect_args=connect_args, pool_pre_ping=True
        )
        if target.get_backend_name() == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _enable_sqlite_pragmas)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.spool = Spool(spool_dir or default_spool_dir())
        self.retry_interval_s = retry_interval_s
        self.write_timeout_s = write_timeout_s
        self.auto_migrate = auto_migrate
        self.metrics = metrics
        self._schema_ready = not auto_migrate
        self._schema_lock = asyncio.Lock()
        self._active: dict[str, CallRecord] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._retry_task: asyncio.Task[None] | None = None
        # After the database fails, calls write straight to the spool until the retry
        # loop sees it back, so a dead database costs each turn no connect timeout.
        self._db_down_until = 0.0

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Migrate, replay anything spooled, and start retrying in the background.

        A database that is down now does not stop the agent: calls are spooled
        and the retry loop migrates and replays once it is back.
        """
        try:
            await self._ensure_schema()
            await self.replay_spool()
        except Exception as exc:  # the reason is logged; calls must go on
            if not _is_unavailable(exc):
                raise
            log.warning("call records: database %s unavailable (%s)", redact(self.url), exc)
        if self.retry_interval_s > 0 and self._retry_task is None:
            self._retry_task = asyncio.create_task(self._retry_loop(), name="records-retry")

    async def close(self) -> None:
        if self._retry_task is not None:
            self._retry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry_task
            self._retry_task = None
        # A spooled live call's latest state goes to its spool file, not just away with RAM.
        for call_id in list(self._active):
            async with self._lock(call_id):
                record = self._active.pop(call_id, None)
                if record is not None and self.spool.has(call_id):
                    await asyncio.to_thread(self.spool.write, record)
        await self.engine.dispose()

    async def __aenter__(self) -> CallRecordStore:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------ writes

    async def save(self, record: CallRecord) -> WriteResult:
        """Store the whole record (insert or replace). Used by the session at call end."""
        validate_record(record)
        snapshot = copy.deepcopy(record)
        async with self._lock(record.call_id):
            if snapshot.ended_at is None:
                self._active[snapshot.call_id] = snapshot
            else:
                self._active.pop(snapshot.call_id, None)
            result = await self._write(snapshot, lambda s: _upsert_record(s, snapshot))
        self._forget_lock(record.call_id)
        return result

    async def start_call(self, record: CallRecord) -> WriteResult:
        """Record that a call began (its header and any turns it already has)."""
        validate_record(record)
        snapshot = copy.deepcopy(record)
        async with self._lock(record.call_id):
            self._active[snapshot.call_id] = snapshot
            return await self._write(snapshot, lambda s: _upsert_record(s, snapshot))

    async def add_turn(self, call_id: str, turn: TurnRecord) -> WriteResult:
        """Add a turn, or replace the one with the same index."""
        validate_turn(turn)
        turn = copy.deepcopy(turn)
        async with self._lock(call_id):
            record = self._live(call_id)
            _put_turn(record, turn)
            return await self._write(record, lambda s: _upsert_turn(s, call_id, turn))

    async def add_tool_call(self, call_id: str, tool_call: ToolCallRecord) -> WriteResult:
        validate_tool_call(tool_call)
        tool_call = copy.deepcopy(tool_call)
        async with self._lock(call_id):
            record = self._live(call_id)
            record.tool_calls.append(tool_call)

            async def insert(session: AsyncSession) -> None:
                session.add(tool_call_row(call_id, tool_call))

            return await self._write(record, insert)

    async def finish_call(
        self,
        call_id: str,
        *,
        end_reason: str,
        ended_at: datetime | None = None,
        outcome: str | None = None,
        error: str | None = None,
        recording_path: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> WriteResult:
        """Record how the call ended; `metadata` is merged into what the call had."""
        async with self._lock(call_id):
            record = copy.deepcopy(self._live(call_id))
            record.ended_at = ended_at or utc_now()
            record.end_reason = end_reason
            record.outcome = outcome if outcome is not None else record.outcome
            record.error = error if error is not None else record.error
            if recording_path is not None:
                record.recording_path = recording_path
            record.metadata.update(metadata or {})
            validate_call_header(record)

            async def update(session: AsyncSession) -> None:
                row = await session.get(Call, call_id)
                if row is None:  # start_call's row was lost; write it all
                    await _upsert_record(session, record)
                else:
                    apply_header(row, record)

            self._active[call_id] = record
            result = await self._write(record, update)
            self._active.pop(call_id, None)
        self._forget_lock(call_id)
        return result

    async def replay_spool(self) -> int:
        """Write spooled records to the database; returns how many were stored."""
        stored = 0
        for path in self.spool.pending():
            try:
                record = self.spool.read(path)
            except InvalidRecord as exc:
                self.spool.quarantine(path, str(exc))
                continue
            async with self._lock(record.call_id):
                # A live call's in-memory copy is newer than its spool file.
                latest = self._active.get(record.call_id, record)
                try:
                    await self._db(lambda s, r=latest: _upsert_record(s, r))
                except Exception as exc:
                    if _is_unavailable(exc):
                        log.info("call records: database still unavailable (%s)", exc)
                        self._mark_down()
                        return stored
                    self.spool.quarantine(path, f"{type(exc).__name__}: {exc}")
                    continue
                self.spool.remove(path)
                self._db_down_until = 0.0
            self._forget_lock(record.call_id)
            stored += 1
            log.info("call records: replayed spooled call %s", record.call_id)
        return stored

    # ------------------------------------------------------------ queries

    async def list_calls(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        outcome: str | None = None,
        end_reason: str | None = None,
        agent_id: str | None = None,
        finished: bool | None = None,
        direction: str | None = None,
        caller: str | None = None,
        agent: str | None = None,
        exclude_ids: Collection[str] = (),
        limit: int = 100,
        offset: int = 0,
    ) -> list[CallRecord]:
        """Call headers (turns and tool_calls left empty), newest first.

        `since` / `until` bound `started_at` (inclusive / exclusive); `caller` matches
        part of the caller URI, any case; `agent` is an agent's id or name;
        `exclude_ids` leaves those calls out (say, the live ones)."""
        if direction is not None and direction not in DIRECTIONS:
            raise InvalidQuery(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidQuery(f"limit must be 1..{MAX_LIST_LIMIT}, got {limit}")
        if offset < 0:
            raise InvalidQuery(f"offset must be >= 0, got {offset}")
        for name, value in (("since", since), ("until", until)):
            if value is not None and value.tzinfo is None:
                raise InvalidQuery(f"{name} must be timezone-aware, got naive {value!r}")
        query = select(Call).order_by(Call.started_at.desc(), Call.id).limit(limit).offset(offset)
        if since is not None:
            query = query.where(Call.started_at >= since)
        if until is not None:
            query = query.where(Call.started_at < until)
        if outcome is not None:
            query = query.where(Call.outcome == outcome)
        if end_reason is not None:
            query = query.where(Call.end_reason == end_reason)
        if agent_id is not None:
            query = query.where(Call.agent_id == agent_id)
        if finished is not None:
            query = query.where(Call.ended_at.is_not(None) if finished else Call.ended_at.is_(None))
        if direction is not None:
            query = query.where(Call.direction == direction)
        if caller is not None:
            query = query.where(Call.caller.icontains(caller, autoescape=True))
        if agent is not None:
            query = query.where(or_(Call.agent_id == agent, Call.agent_name == agent))
        if exclude_ids:
            query = query.where(Call.id.not_in(list(exclude_ids)))
        await self._ensure_schema()
        async with self._sessions() as session:
            rows = (await session.scalars(query)).all()
        return [header_from_row(row) for row in rows]

    async def get_call(self, call_id: str) -> CallRecord | None:
        """The call with its turns (by index) and tool calls (in order), or None."""
        await self._ensure_schema()
        async with self._sessions() as session:
            row = await session.get(
                Call, call_id, options=[selectinload(Call.turns), selectinload(Call.tool_calls)]
            )
            if row is None:
                return None
            record = header_from_row(row)
            record.turns = [turn_from_row(t) for t in row.turns]
            record.tool_calls = [tool_call_from_row(c) for c in row.tool_calls]
        return record

    # ------------------------------------------------------------ internals

    def _lock(self, call_id: str) -> asyncio.Lock:
        return self._locks.setdefault(call_id, asyncio.Lock())

    def _forget_lock(self, call_id: str) -> None:
        lock = self._locks.get(call_id)
        if lock is not None and not lock.locked() and call_id not in self._active:
            del self._locks[call_id]

    def _live(self, call_id: str) -> CallRecord:
        record = self._active.get(call_id)
        if record is None:
            raise UnknownCall(f"call {call_id!r} is not in progress here: call start_call first")
        return record

    async def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        async with self._schema_lock:
            if not self._schema_ready:
                await asyncio.wait_for(migrate.upgrade(self.engine), self.write_timeout_s)
                self._schema_ready = True

    async def _db(self, work: Callable[[AsyncSession], Awaitable[None]]) -> None:
        async def run() -> None:
            await self._ensure_schema()
            async with self._sessions() as session, session.begin():
                await work(session)

        await asyncio.wait_for(run(), self.write_timeout_s)

    async def _write(
        self, record: CallRecord, work: Callable[[AsyncSession], Awaitable[None]]
    ) -> WriteResult:
        """Run `work`; if this call is already spooled, or `work` fails, fall back to
        the whole record (upsert, else spool file). Caller holds the call's lock."""
        if self.spool.has(record.call_id):

            async def work(session: AsyncSession) -> None:
                # Catch the database up with everything, not just this one change.
                await _upsert_record(session, record)

        try:
            if time.monotonic() < self._db_down_until:
                raise _MarkedDown("database unavailable at the last try; the retry loop replays")
            await self._db(work)
        except Exception as db_exc:  # any DB failure: the record goes to the spool
            if _is_unavailable(db_exc) and not isinstance(db_exc, _MarkedDown):
                self._mark_down()
            try:
                path = await asyncio.to_thread(self.spool.write, record)
            except OSError as spool_exc:
                raise RecordNotSaved(
                    f"call {record.call_id}: database write failed ({db_exc}) and the spool "
                    f"directory {self.spool.directory} is not writable ({spool_exc})"
                ) from spool_exc
            log.warning(
                "call records: database write for call %s failed (%s: %s); spooled to %s",
                record.call_id,
                type(db_exc).__name__,
                db_exc,
                path,
            )
            if self.metrics is not None:
                self.metrics.record_spooled()
            return WriteResult.SPOOLED
        self.spool.remove(self.spool.path_for(record.call_id))
        return WriteResult.STORED

    def _mark_down(self) -> None:
        # Only with a retry loop running: it is what notices the database is back.
        if self._retry_task is not None:
            self._db_down_until = time.monotonic() + self.retry_interval_s

    async def _retry_loop(self) -> None:
        while True:
            await asyncio.sleep(self.retry_interval_s)
            if not self.spool.pending():
                continue
            try:
                await self.replay_spool()
            except Exception:  # a failed round must not end the loop; the next one retries
                log.exception("call records: spool replay failed")
