"""Call records on a real SQLite file and the real PostgreSQL at 127.0.0.1:5432.

Each PostgreSQL test session creates its own uniquely named database and drops it
at the end; PostgreSQL being absent is a failure, not a skip.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from agent.metrics import CallMetrics
from agent.records import (
    CallRecord,
    CallRecordStore,
    DatabaseConfigError,
    InvalidQuery,
    InvalidRecord,
    ToolCallRecord,
    TurnRecord,
    UnknownCall,
    WriteResult,
    migrate,
)
from agent.records.cli import db as db_cli
from agent.records.config import async_url
from agent.records.models import Base

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"
PG_URL = "postgresql://postgres@127.0.0.1:5432/{name}"
REPO = Path(__file__).resolve().parents[2]
RECORD_TABLES = {"calls", "turns", "tool_calls"}


def _pg_admin() -> psycopg.Connection:
    try:
        return psycopg.connect(PG_ADMIN, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(
            "PostgreSQL is not reachable at 127.0.0.1:5432 as user postgres (trust auth); "
            f"these tests need it running (Debian: apt-get install postgresql): {exc}",
            pytrace=False,
        )


def _drop_database(name: str) -> None:
    with _pg_admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    name = f"trunkline_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with _pg_admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        _drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'records.db'}"
        return
    name = request.getfixturevalue("pg_database")
    yield PG_URL.format(name=name)
    # Each test starts from an empty database.
    with psycopg.connect(f"{PG_ADMIN.replace('dbname=postgres', f'dbname={name}')}") as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


def _t(minute: int, tz: timezone = UTC) -> datetime:
    return datetime(2026, 11, 22, 3, minute, 7, 123456, tzinfo=UTC).astimezone(tz)


def full_record(**overrides: object) -> CallRecord:
    """A realistic call: greeting, a question, a tool call, a barged-in answer."""
    paris = timezone(timedelta(hours=1))
    record = CallRecord(
        direction="inbound",
        caller="sip:+15551230000@127.0.0.1",
        callee="sip:maya@127.0.0.1",
        agent_id="maya",
        agent_name="Maya",
        started_at=_t(0, paris),
        answered_at=_t(0),
        ended_at=_t(3),
        end_reason="caller_hangup",
        outcome="resolved",
        recording_path="/var/lib/trunkline/recordings/x.wav",
        metadata={"sip_call_id": "a84b4c76e66710@127.0.0.1", "store": "Zürich 12", "n": [1, 2]},
        turns=[
            TurnRecord(index=0, speaker="agent", text="Hi, this is Maya.", started_at=_t(0)),
            TurnRecord(
                index=1,
                speaker="caller",
                text="My receipt printer is blinking red.",
                started_at=_t(1),
                ended_at=_t(1),
                stt_ms=182.5,
            ),
            TurnRecord(
                index=2,
                speaker="agent",
                text="Let me check the printer status. It reports a paper jam near the cutter.",
                heard_text="Let me check the printer status.",
                interrupted=True,
                started_at=_t(2),
                ended_at=_t(2),
                latency_trace={"end_of_speech": 0.0, "stt_done": 0.18, "first_rtp": 0.71},
                turn_latency_ms=710.0,
                stt_ms=180.0,
                llm_ttft_ms=240.25,
                tts_ttfa_ms=120.0,
            ),
        ],
        tool_calls=[
            ToolCallRecord(
                turn_index=2,
                name="printer_status",
                arguments={"store_id": 12, "printer": "front"},
                result={"state": "jam", "where": "cutter"},
                duration_ms=95.0,
                started_at=_t(2),
            ),
            ToolCallRecord(
                turn_index=2,
                name="open_ticket",
                arguments={"summary": "jam"},
                ok=False,
                error="ticket API timed out",
            ),
        ],
    )
    for key, value in overrides.items():
        setattr(record, key, value)
    return record


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def _spooled(spool_dir: Path) -> list[str]:
    """Names of the spool files waiting for replay."""
    return sorted(p.name for p in spool_dir.glob("*.json"))


async def _wait_for(predicate, timeout_s: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout_s} s")


# ---------------------------------------------------------------- migrations


async def test_migrations_go_up_and_down_and_match_the_models(db_url: str) -> None:
    engine = create_async_engine(async_url(db_url))
    try:
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision()
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            # The migration creates exactly what the ORM models describe (no drift).
            diffs = await conn.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata
                )
            )
        assert RECORD_TABLES <= tables
        assert diffs == []

        await migrate.downgrade(engine, "base")
        assert await migrate.current_revision(engine) is None
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert not RECORD_TABLES & tables

        await migrate.upgrade(engine)  # and back up again, cleanly
        assert await migrate.current_revision(engine) == migrate.head_revision()
    finally:
        await engine.dispose()


def test_db_cli_upgrades_and_downgrades(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    up = runner.invoke(db_cli, ["upgrade", "--url", url])
    assert up.exit_code == 0, up.output
    assert migrate.head_revision() in up.output
    down = runner.invoke(db_cli, ["downgrade", "--url", url])
    assert down.exit_code == 0, down.output
    assert "base (empty)" in down.output
    bad = runner.invoke(db_cli, ["upgrade", "--url", "postgresql://postgres@127.0.0.1:1/none"])
    assert bad.exit_code != 0
    assert "upgrade failed" in bad.output


# ---------------------------------------------------------------- round trip


async def test_saved_record_reads_back_whole(db_url: str, spool_dir: Path) -> None:
    record = full_record()
    async with CallRecordStore(db_url, spool_dir=spool_dir, retry_interval_s=0) as store:
        assert await store.save(record) is WriteResult.STORED
        got = await store.get_call(record.call_id)
        assert got == record  # times compare as instants; they come back in UTC
        assert got is not None and got.started_at.tzinfo == UTC
        assert got.turns[2].heard_text == "Let me check the printer status."
        assert [c.name for c in got.tool_calls] == ["printer_status", "open_ticket"]

        # Saving again replaces (the session may save the same call twice): no duplicates.
        record.turns = record.turns[:2]
        record.tool_calls = []
        record.outcome = "escalated"
        assert await store.save(record) is WriteResult.STORED
        again = await store.get_call(record.call_id)
        assert again == record
        assert await store.get_call("no-such-call") is None
    assert _spooled(spool_dir) == []


async def test_incremental_writes_build_the_record(db_url: str, spool_dir: Path) -> None:
    expected = full_record()
    header = full_record(turns=[], tool_calls=[], ended_at=None, end_reason=None, outcome=None)
    header.call_id = expected.call_id
    async with CallRecordStore(db_url, spool_dir=spool_dir, retry_interval_s=0) as store:
        assert await store.start_call(header) is WriteResult.STORED
        # The agent turn is first written whole, then updated after the caller barged in.
        uncut = TurnRecord(index=2, speaker="agent", text=expected.turns[2].text)
        for turn in [*expected.turns[:2], uncut, expected.turns[2]]:
            assert await store.add_turn(header.call_id, turn) is WriteResult.STORED
        for call in expected.tool_calls:
            assert await store.add_tool_call(header.call_id, call) is WriteResult.STORED
        live = await store.get_call(header.call_id)
        assert live is not None and live.ended_at is None and len(live.turns) == 3
        result = await store.finish_call(
            header.call_id,
            ended_at=expected.ended_at,
            end_reason="caller_hangup",
            outcome="resolved",
            recording_path=expected.recording_path,
        )
        assert result is WriteResult.STORED
        assert await store.get_call(header.call_id) == expected
        with pytest.raises(UnknownCall, match="start_call first"):
            await store.add_turn(header.call_id, TurnRecord(index=9, speaker="caller", text="x"))


CRASHING_CALL = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from agent.records import CallRecord, CallRecordStore, TurnRecord

    async def main():
        store = CallRecordStore(sys.argv[1], spool_dir=sys.argv[2], retry_interval_s=0)
        await store.start()
        record = CallRecord(call_id=sys.argv[3], caller="sip:bob@127.0.0.1", agent_id="maya")
        await store.start_call(record)
        await store.add_turn(record.call_id, TurnRecord(index=0, speaker="agent", text="Hello"))
        await store.add_turn(
            record.call_id, TurnRecord(index=1, speaker="caller", text="The printer is dead")
        )
        print("written", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # the agent dies mid-call: no finish_call

    asyncio.run(main())
    """
)


async def test_a_crash_mid_call_keeps_what_happened_so_far(db_url: str, spool_dir: Path) -> None:
    call_id = f"crash-{uuid.uuid4().hex[:8]}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CRASHING_CALL,
        db_url,
        str(spool_dir),
        call_id,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, stderr.decode()
    assert b"written" in stdout

    async with CallRecordStore(db_url, spool_dir=spool_dir, retry_interval_s=0) as store:
        got = await store.get_call(call_id)
        assert got is not None
        assert [t.text for t in got.turns] == ["Hello", "The printer is dead"]
        assert got.ended_at is None  # visibly unfinished
        unfinished = await store.list_calls(finished=False)
        assert call_id in [c.call_id for c in unfinished]


# ---------------------------------------------------------------- database down


def _down_url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'no-such-dir' / 'records.db'}"
    return "postgresql://postgres@127.0.0.1:1/trunkline_nowhere"  # nothing listens on port 1


async def test_database_down_spools_then_replays(
    backend: str, db_url: str, spool_dir: Path, tmp_path: Path
) -> None:
    finished = full_record()
    metrics = CallMetrics()
    down = CallRecordStore(
        _down_url(backend, tmp_path),
        spool_dir=spool_dir,
        retry_interval_s=0,
        connect_timeout_s=2,
        metrics=metrics,
    )
    await down.start()  # a dead database does not stop the agent starting
    try:
        assert await down.save(finished) is WriteResult.SPOOLED
        live = CallRecord(caller="sip:carol@127.0.0.1")
        assert await down.start_call(live) is WriteResult.SPOOLED
        turn = TurnRecord(index=0, speaker="caller", text="Is anyone there?")
        assert await down.add_turn(live.call_id, turn) is WriteResult.SPOOLED
    finally:
        await down.close()

    assert _spooled(spool_dir) == sorted([f"{finished.call_id}.json", f"{live.call_id}.json"])
    spooled = _read_json(spool_dir / f"{live.call_id}.json")
    assert spooled["turns"][0]["text"] == "Is anyone there?"
    assert metrics.registry.get_sample_value("trunkline_call_records_spooled_total") == 3

    # Later, an agent with a working database replays the spool on start.
    async with CallRecordStore(db_url, spool_dir=spool_dir, retry_interval_s=0) as store:
        assert await store.get_call(finished.call_id) == finished
        replayed = await store.get_call(live.call_id)
        assert replayed is not None and [t.text for t in replayed.turns] == ["Is anyone there?"]
    assert _spooled(spool_dir) == []


class LateDatabase:
    """A database that is down at first and comes up when told (same URL throughout)."""

    def __init__(self, backend: str, tmp_path: Path) -> None:
        self.backend = backend
        if backend == "sqlite":
            self.directory = tmp_path / "late"
            self.url = f"sqlite:///{self.directory / 'records.db'}"
        else:
            _pg_admin().close()  # fail clearly if PostgreSQL itself is absent
            self.name = f"trunkline_test_late_{os.getpid()}_{uuid.uuid4().hex[:8]}"
            self.url = PG_URL.format(name=self.name)

    def bring_up(self) -> None:
        if self.backend == "sqlite":
            self.directory.mkdir()
        else:
            with _pg_admin() as admin:
                admin.execute(f'CREATE DATABASE "{self.name}"')

    def remove(self) -> None:
        if self.backend == "postgresql":
            _drop_database(self.name)


@pytest.fixture
def late_db(backend: str, tmp_path: Path) -> Iterator[LateDatabase]:
    late = LateDatabase(backend, tmp_path)
    try:
        yield late
    finally:
        late.remove()


async def test_retry_loop_replays_when_the_database_returns(
    late_db: LateDatabase, spool_dir: Path
) -> None:
    store = CallRecordStore(
        late_db.url, spool_dir=spool_dir, retry_interval_s=0.2, connect_timeout_s=2
    )
    await store.start()
    try:
        done = full_record()
        assert await store.save(done) is WriteResult.SPOOLED
        live = CallRecord(caller="sip:dave@127.0.0.1")
        assert await store.start_call(live) is WriteResult.SPOOLED
        turn0 = TurnRecord(index=0, speaker="caller", text="Hello?")
        # Straight to the spool while the database is known down (no connect wait).
        assert await store.add_turn(live.call_id, turn0) is WriteResult.SPOOLED

        late_db.bring_up()

        async def replayed() -> bool:
            return _spooled(spool_dir) == []

        await _wait_for(replayed)
        assert await store.get_call(done.call_id) == done
        got = await store.get_call(live.call_id)
        assert got is not None and [t.text for t in got.turns] == ["Hello?"]
        turn1 = TurnRecord(index=1, speaker="agent", text="Hi, this is Maya.")
        assert await store.add_turn(live.call_id, turn1) is WriteResult.STORED
    finally:
        await store.close()


async def test_next_write_catches_a_spooled_call_up(late_db: LateDatabase, spool_dir: Path) -> None:
    """Without a retry loop, the live call's next write brings the whole call up to date."""
    async with CallRecordStore(
        late_db.url, spool_dir=spool_dir, retry_interval_s=0, connect_timeout_s=2
    ) as store:
        live = CallRecord(caller="sip:erin@127.0.0.1", metadata={"try": 1})
        assert await store.start_call(live) is WriteResult.SPOOLED
        late_db.bring_up()
        turn = TurnRecord(index=0, speaker="caller", text="Hello again")
        assert await store.add_turn(live.call_id, turn) is WriteResult.STORED
        got = await store.get_call(live.call_id)
        assert got is not None and got.metadata == {"try": 1}
        assert [t.text for t in got.turns] == ["Hello again"]
        assert _spooled(spool_dir) == []


def _write_garbage(spool_dir: Path) -> None:
    spool_dir.mkdir(parents=True)
    (spool_dir / "garbage.json").write_text("{not json")


async def test_unreadable_spool_file_is_set_aside(db_url: str, spool_dir: Path) -> None:
    _write_garbage(spool_dir)
    good = full_record()
    async with CallRecordStore(
        "sqlite:////nonexistent-dir/x.db", spool_dir=spool_dir, retry_interval_s=0
    ) as down:
        await down.save(good)
    async with CallRecordStore(db_url, spool_dir=spool_dir, retry_interval_s=0) as store:
        assert await store.get_call(good.call_id) == good
    assert _spooled(spool_dir / "failed") == ["garbage.json"]
    assert _spooled(spool_dir) == []


# ---------------------------------------------------------------- queries


async def test_list_calls_filters_by_time_and_outcome(db_url: str, spool_dir: Path) -> None:
    base = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    calls = [
        full_record(started_at=base, outcome="resolved"),
        full_record(started_at=base + timedelta(hours=1), outcome="escalated"),
        full_record(started_at=base + timedelta(hours=2), outcome="resolved", ended_at=None),
    ]
    for i, call in enumerate(calls):
        call.call_id = f"list-{i}"
    async with CallRecordStore(db_url, spool_dir=spool_dir, retry_interval_s=0) as store:
        for call in calls:
            await store.save(call)
        ids = lambda rows: [r.call_id for r in rows]  # noqa: E731
        assert ids(await store.list_calls()) == ["list-2", "list-1", "list-0"]
        assert ids(await store.list_calls(outcome="resolved")) == ["list-2", "list-0"]
        window = await store.list_calls(
            since=base + timedelta(minutes=30), until=base + timedelta(hours=2)
        )
        assert ids(window) == ["list-1"]
        assert ids(await store.list_calls(finished=False)) == ["list-2"]
        assert ids(await store.list_calls(limit=1, offset=1)) == ["list-1"]
        headers = await store.list_calls(agent_id="maya", limit=1)
        assert headers[0].turns == [] and headers[0].agent_name == "Maya"
        with pytest.raises(InvalidQuery, match="limit"):
            await store.list_calls(limit=0)
        with pytest.raises(InvalidQuery, match="timezone-aware"):
            await store.list_calls(since=datetime(2026, 11, 20))


# ---------------------------------------------------------------- bad input, config


async def test_bad_records_are_refused_with_the_field_named(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    async with CallRecordStore(url, spool_dir=tmp_path / "spool", retry_interval_s=0) as store:
        with pytest.raises(InvalidRecord, match=r"started_at.*timezone-aware"):
            await store.save(CallRecord(started_at=datetime(2026, 11, 22, 3, 0)))
        with pytest.raises(InvalidRecord, match=r"turns\[0\]\.speaker"):
            await store.save(CallRecord(turns=[TurnRecord(index=0, speaker="bot", text="x")]))  # type: ignore[arg-type]
        with pytest.raises(InvalidRecord, match="metadata: not JSON"):
            await store.save(CallRecord(metadata={"when": object()}))
        with pytest.raises(InvalidRecord, match="duplicate turn index 0"):
            turn = TurnRecord(index=0, speaker="caller", text="x")
            await store.save(CallRecord(turns=[turn, turn]))
        with pytest.raises(InvalidRecord, match="turn_latency_ms: must be finite"):
            bad = TurnRecord(index=0, speaker="agent", text="x", turn_latency_ms=float("nan"))
            await store.save(CallRecord(turns=[bad]))
        with pytest.raises(InvalidRecord, match="call_id"):
            await store.save(CallRecord(call_id="x" * 65))
        with pytest.raises(UnknownCall):
            await store.finish_call("never-started", end_reason="caller_hangup")
        # Nothing malformed reached the database or the spool.
        assert await store.list_calls() == []
    assert _spooled(tmp_path / "spool") == []


def test_bad_database_urls_fail_fast(tmp_path: Path) -> None:
    with pytest.raises(DatabaseConfigError, match="unsupported driver 'mysql'"):
        CallRecordStore("mysql://root:secret@127.0.0.1/x", spool_dir=tmp_path)
    with pytest.raises(DatabaseConfigError, match="malformed") as info:
        CallRecordStore("not a url", spool_dir=tmp_path)
    assert "secret" not in str(info.value)


async def test_default_database_is_sqlite_in_trunkline_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRUNKLINE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    async with CallRecordStore(retry_interval_s=0) as store:
        assert store.url == f"sqlite:///{tmp_path / 'home' / 'trunkline.db'}"
        assert store.spool.directory == tmp_path / "home" / "spool" / "calls"
        await store.save(full_record())
    assert (tmp_path / "home" / "trunkline.db").stat().st_size > 0

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    async with CallRecordStore(spool_dir=tmp_path / "spool", retry_interval_s=0) as store:
        assert store.url.endswith("env.db")
    assert (tmp_path / "env.db").exists()
