"""The live-call registry on the real Redis at 127.0.0.1:6379: replicas see each
other's calls and events; a replica that dies (SIGKILL) has its calls expire.

Every test uses its own key prefix and deletes its keys afterwards.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis

from agent.app.api import agent_app
from agent.app.live_registry import (
    CallEvent,
    InProcessRegistry,
    LiveSink,
    RedisRegistry,
    live_registry_from_env,
)
from agent.records import CallRecordStore
from agent.session import CallRecord as SessionRecord
from agent.session import TranscriptEntry

REDIS_URL = "redis://127.0.0.1:6379/0"
REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


def session_record(call_id: str, caller: str = "sip:+15551230001@127.0.0.1") -> SessionRecord:
    return SessionRecord(
        call_id=call_id,
        caller=caller,
        callee="sip:agent@127.0.0.1:5060",
        direction="inbound",
        started_at=datetime.now(UTC),
        agent_name="Maya",
    )


async def until(check: Callable[[], object], timeout_s: float, what: str) -> None:
    """Poll an async predicate until true; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():  # type: ignore[misc]
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s: {what}")


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    client = redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL}; these tests need it: {exc}")
    name = f"trunkline-test:{uuid.uuid4().hex[:12]}:"
    yield name
    keys = [k async for k in client.scan_iter(match=f"{name}*", count=500)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def next_event(events: AsyncIterator[CallEvent], timeout_s: float = 10.0) -> CallEvent:
    return await asyncio.wait_for(anext(events), timeout_s)


async def test_two_replicas_see_each_others_calls_and_events(prefix: str) -> None:
    a = RedisRegistry(REDIS_URL, prefix=prefix, replica="replica-a", ttl_s=5)
    b = RedisRegistry(REDIS_URL, prefix=prefix, replica="replica-b", ttl_s=5)
    async with a, b, b.subscribe() as events:
        record = session_record("call-on-a@pbx")
        await a.track(record)
        await b.track(session_record("call-on-b@pbx", caller="sip:+15559990002@127.0.0.1"))
        for registry in (a, b):
            calls = {c.call_id: c for c in await registry.calls()}
            assert set(calls) == {"call-on-a@pbx", "call-on-b@pbx"}
            assert calls["call-on-a@pbx"].replica == "replica-a"
            assert calls["call-on-b@pbx"].caller == "sip:+15559990002@127.0.0.1"
        started = [await next_event(events), await next_event(events)]
        assert {(e.type, e.call_id, e.replica) for e in started} == {
            ("started", "call-on-a@pbx", "replica-a"),
            ("started", "call-on-b@pbx", "replica-b"),
        }
        # The session appends to its record; the replica notices and tells everyone.
        record.transcript.append(TranscriptEntry("caller", "my printer is out of paper", 1.0, 2.5))
        turn = await next_event(events)
        assert (turn.type, turn.call_id) == ("turn", "call-on-a@pbx")
        assert turn.data["new"] == [
            {"speaker": "caller", "text": "my printer is out of paper", "kind": "speech"}
        ]
        seen_by_b = await b.get("call-on-a@pbx")
        assert seen_by_b is not None and seen_by_b.last_text == "my printer is out of paper"
        await a.untrack("call-on-a@pbx", outcome="completed", end_reason="remote_hangup")
        ended = await next_event(events)
        assert (ended.type, ended.call_id) == ("ended", "call-on-a@pbx")
        assert ended.data == {"outcome": "completed", "end_reason": "remote_hangup"}
        assert [c.call_id for c in await b.calls()] == ["call-on-b@pbx"]


REPLICA = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import UTC, datetime
    from agent.app.live_registry import RedisRegistry
    from agent.session import CallRecord

    async def main():
        registry = RedisRegistry(sys.argv[1], prefix=sys.argv[2], replica="doomed", ttl_s=2)
        await registry.start()
        await registry.track(CallRecord(
            call_id="orphan@pbx", caller="sip:c@127.0.0.1", callee="sip:agent@127.0.0.1",
            direction="inbound", started_at=datetime.now(UTC)))
        print("tracking", flush=True)
        await asyncio.sleep(120)

    asyncio.run(main())
    """
)


async def test_a_crashed_replicas_calls_expire(prefix: str) -> None:
    survivor = RedisRegistry(REDIS_URL, prefix=prefix, replica="survivor", ttl_s=2)
    replica = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        REPLICA,
        REDIS_URL,
        prefix,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert replica.stdout is not None
        line = await asyncio.wait_for(replica.stdout.readline(), 60)
        assert line.strip() == b"tracking", line
        async with survivor:

            async def listed() -> bool:
                return "orphan@pbx" in await survivor.live_ids()

            # While the replica lives it keeps the call fresh past its 2 s TTL.
            await until(listed, 10, "the other replica's call is listed")
            await asyncio.sleep(3)
            assert await listed(), "a live replica's call expired"
            replica.send_signal(signal.SIGKILL)  # no clean-up: a crash
            await asyncio.wait_for(replica.wait(), 10)

            async def gone() -> bool:
                return not await listed()

            await until(gone, 10, "the dead replica's call expired")
    finally:
        if replica.returncode is None:
            replica.kill()
            await asyncio.wait_for(replica.wait(), 10)


async def test_api_lists_live_calls_of_every_replica(prefix: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'calls.db'}"
    other = RedisRegistry(REDIS_URL, prefix=prefix, replica="replica-a")
    mine = RedisRegistry(REDIS_URL, prefix=prefix, replica="replica-b")
    async with (
        other,
        mine,
        CallRecordStore(url, spool_dir=tmp_path / "spool", retry_interval_s=0) as store,
    ):
        await other.track(session_record("elsewhere@pbx"))
        app = agent_app(
            store=store, live_sessions=dict, health=lambda: (True, {}), live_registry=mine
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://agent.test") as client:
            listed = (await client.get("/api/calls", params={"live": "true"})).json()["calls"]
            assert [(c["call_id"], c["live"]) for c in listed] == [("elsewhere@pbx", True)]
            detail = await client.get("/api/calls/elsewhere@pbx")
            assert detail.status_code == 200 and detail.json()["live"] is True
            await other.untrack("elsewhere@pbx")
            assert (await client.get("/api/calls", params={"live": "true"})).json()["calls"] == []


async def test_live_sink_tracks_a_call_from_start_to_saved_record(prefix: str) -> None:
    saved: list[str] = []

    class Store:
        async def on_call_start(self, record: SessionRecord) -> None:
            saved.append(f"start {record.call_id}")

        async def on_call_end(self, record: SessionRecord) -> None:
            # Still listed as live while its record is being saved.
            assert record.call_id in await registry.live_ids()
            saved.append(f"end {record.call_id}")

    async with RedisRegistry(REDIS_URL, prefix=prefix) as registry:
        sink = LiveSink(Store(), registry)
        record = session_record("sunk@pbx")
        await sink.on_call_start(record)
        assert await registry.live_ids() == {"sunk@pbx"}
        record.outcome, record.end_reason = "completed", "remote_hangup"
        await sink.on_call_end(record)
        assert saved == ["start sunk@pbx", "end sunk@pbx"]
        assert await registry.live_ids() == set()


async def test_without_redis_url_the_registry_is_in_process() -> None:
    assert isinstance(live_registry_from_env({}), InProcessRegistry)
    registry = live_registry_from_env({"REDIS_URL": REDIS_URL, "TRUNKLINE_REDIS_PREFIX": "x:"})
    assert isinstance(registry, RedisRegistry) and registry.prefix == "x:"
    await registry.close()
    async with InProcessRegistry(replica="solo") as solo, solo.subscribe() as events:
        await solo.track(session_record("solo@pbx"))
        assert [c.call_id for c in await solo.calls()] == ["solo@pbx"]
        assert (await next_event(events)).type == "started"
        await solo.untrack("solo@pbx")
        assert (await next_event(events)).type == "ended"


async def test_unreachable_redis_never_breaks_a_call_or_the_listing(tmp_path: Path) -> None:
    # Port 1 on loopback: connection refused at once.
    down = RedisRegistry("redis://127.0.0.1:1/0", prefix="unused:")
    async with down:
        await down.track(session_record("still-works@pbx"))  # logged, not raised
        with pytest.raises(redis.ConnectionError):
            await down.ping()
        url = f"sqlite:///{tmp_path / 'calls.db'}"
        async with CallRecordStore(url, spool_dir=tmp_path / "spool", retry_interval_s=0) as store:
            app = agent_app(
                store=store, live_sessions=dict, health=lambda: (True, {}), live_registry=down
            )
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://a.test") as client:
                response = await client.get("/api/calls")
                assert response.status_code == 200 and response.json()["calls"] == []
