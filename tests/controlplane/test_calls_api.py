"""`/api/calls` behind API keys: who may read, every filter, the detail view, live calls.

Real SQLite file and real PostgreSQL (the `db_url` fixture), the app exactly as
`trunkline serve` builds it (`agent_app` with a control plane).
"""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from agent.app.api import agent_app
from agent.app.live_registry import InProcessRegistry
from agent.controlplane.db import ControlPlaneStore
from agent.records import CallRecord, CallRecordStore, ToolCallRecord, TurnRecord
from agent.session import CallRecord as SessionRecord
from agent.session import TranscriptEntry
from agent.session.recording import recording_file
from tests.controlplane.conftest import mint_key

BASE = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
WORKFLOW = {
    "name": "KBA3813",
    "outcome": "resolved",
    "steps": [{"id": "check_paper", "said": "Is there paper in the printer?"}],
    "tried": ["load_paper"],
    "ticket_id": "T1",
    "ticket_updated": True,
}
GOALS = {"items": [{"goal": "identify the store", "met": True}]}


def stored(call_id: str, **fields: Any) -> CallRecord:
    record = CallRecord(
        call_id=call_id,
        caller=fields.pop("caller", "sip:+15551230001@127.0.0.1"),
        callee="sip:agent@127.0.0.1:5060",
        agent_name=fields.pop("agent_name", "Maya"),
        started_at=fields.pop("started_at", BASE),
        metadata={"sip_call_id": call_id},
    )
    record.ended_at = record.started_at + timedelta(minutes=3)
    for key, value in fields.items():
        setattr(record, key, value)
    return record


@dataclass
class Calls:
    client: httpx.AsyncClient
    read: dict[str, str]
    admin: dict[str, str]
    store: CallRecordStore
    registry: InProcessRegistry
    recordings: Path

    async def get(self, path: str, headers: dict[str, str] | None = None, **params: Any):
        return await self.client.get(
            path, params=params, headers=self.read if headers is None else headers
        )

    async def ids(self, **params: Any) -> list[str]:
        response = await self.get("/api/calls", **params)
        assert response.status_code == 200, response.text
        return [c["call_id"] for c in response.json()["calls"]]


class _LiveSession:
    """What the API reads of a running CallSession: its record so far."""

    def __init__(self, record: SessionRecord) -> None:
        self.record = record


def live_record(call_id: str, started_at: datetime, caller: str) -> SessionRecord:
    record = SessionRecord(
        call_id=call_id,
        caller=caller,
        callee="sip:agent@127.0.0.1:5060",
        direction="inbound",
        started_at=started_at,
        agent_name="Maya",
    )
    record.transcript.append(TranscriptEntry("agent", "Hi, this is Maya.", 0.0, 1.5, "greeting"))
    return record


@pytest.fixture
async def calls(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Calls]:
    monkeypatch.setenv("TRUNKLINE_HOME", str(tmp_path / "home"))
    async with (
        ControlPlaneStore(db_url) as control_plane,
        CallRecordStore(db_url, spool_dir=tmp_path / "spool", retry_interval_s=0) as store,
        InProcessRegistry(replica="this") as registry,
    ):
        read = {"Authorization": f"Bearer {await mint_key(control_plane, 'read')}"}
        admin = {"Authorization": f"Bearer {await mint_key(control_plane, 'admin')}"}
        detailed = stored(
            "c1@pbx",
            outcome="completed",
            end_reason="remote_hangup",
            turns=[
                TurnRecord(index=0, speaker="agent", text="Hi, this is Maya."),
                TurnRecord(index=1, speaker="caller", text="My printer is out of paper."),
            ],
            tool_calls=[ToolCallRecord(turn_index=1, name="printer_status", ok=True)],
        )
        detailed.metadata.update(
            duration_s=180.0,
            transcript=[{"speaker": "caller", "text": "My printer is out of paper."}],
            turns=[{"index": 0, "caller_text": "My printer is out of paper.", "stages_ms": {}}],
            events=[{"kind": "barge_in", "at_s": 12.5, "detail": ""}],
            errors=[{"stage": "tts", "message": "slow", "at_s": 3.0, "retried": True}],
            workflow=WORKFLOW,
            goals=GOALS,
        )
        await store.save(detailed)
        await store.save(
            stored(
                "c2@pbx",
                direction="outbound",
                caller="sip:agent@127.0.0.1",
                started_at=BASE + timedelta(hours=1),
                outcome="escalated",
                end_reason="local_hangup",
            )
        )
        await store.save(
            stored(
                "c3@pbx",
                agent_id="sales",
                agent_name="Sam",
                caller="sip:+15559990002@127.0.0.1",
                started_at=BASE + timedelta(hours=2),
                outcome="completed",
                end_reason="local_hangup",
            )
        )
        # A call running in this process (also stored at its start, as the sink does)...
        local = live_record("live-here@pbx", BASE + timedelta(hours=3), "sip:+15550000003@x")
        await store.start_call(
            CallRecord(
                call_id="live-here@pbx",
                caller=local.caller,
                agent_name="Maya",
                started_at=local.started_at,
                metadata={"sip_call_id": "live-here@pbx"},
            )
        )
        # ...and one only the registry knows (another replica's; its database row not
        # written yet).
        await registry.track(
            live_record("live-there@pbx", BASE + timedelta(hours=4), "sip:+1555@y")
        )
        sessions = {"live-here@pbx": _LiveSession(local)}
        app = agent_app(
            store=store,
            live_sessions=lambda: sessions,
            health=lambda: (True, {"status": "ok"}),
            control_plane=control_plane,
            live_registry=registry,
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://agent.test") as client:
            yield Calls(client, read, admin, store, registry, tmp_path / "home" / "recordings")


async def test_calls_need_an_api_key_and_read_scope_is_enough(calls: Calls) -> None:
    for path in ("/api/calls", "/api/calls/c1@pbx", "/api/calls/c1@pbx/recording"):
        response = await calls.get(path, headers={})
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
        assert "API key" in response.json()["detail"]
        bad = {"Authorization": "Bearer tk_000000000000_" + "x" * 43}
        assert (await calls.get(path, headers=bad)).status_code == 401
    assert (await calls.get("/api/calls", headers=calls.read)).status_code == 200
    assert (await calls.get("/api/calls", headers=calls.admin)).status_code == 200
    assert (await calls.get("/api/calls/c1@pbx", headers=calls.read)).status_code == 200
    # Health and metrics stay open for probes and scrapers.
    assert (await calls.get("/healthz", headers={})).status_code == 200
    metrics = await calls.get("/metrics", headers={})
    assert metrics.status_code == 200 and "trunkline" in metrics.text


async def test_listing_is_newest_first_and_marks_live_calls(calls: Calls) -> None:
    response = await calls.get("/api/calls")
    listed = response.json()["calls"]
    assert [c["call_id"] for c in listed] == ["live-here@pbx", "c3@pbx", "c2@pbx", "c1@pbx"]
    live = listed[0]
    assert live["live"] is True and live["outcome"] == "in_progress" and live["ended_at"] is None
    assert listed[1]["live"] is False and listed[1]["outcome"] == "completed"
    assert "transcript" not in listed[1] and "workflow" not in listed[1]  # detail only


async def test_every_filter_narrows_the_list(calls: Calls) -> None:
    assert await calls.ids(direction="outbound") == ["c2@pbx"]
    assert await calls.ids(direction="inbound", agent="Maya") == ["live-here@pbx", "c1@pbx"]
    assert await calls.ids(agent="sales") == ["c3@pbx"]  # an agent's id works too
    assert await calls.ids(outcome="completed") == ["c3@pbx", "c1@pbx"]
    assert await calls.ids(end_reason="local_hangup") == ["c3@pbx", "c2@pbx"]
    assert await calls.ids(caller="5559990002") == ["c3@pbx"]
    assert await calls.ids(caller="SIP:+1555123") == ["c1@pbx"]  # part of it, any case
    since = (BASE + timedelta(minutes=30)).isoformat()
    until = (BASE + timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    assert await calls.ids(since=since, until=until) == ["c2@pbx"]
    # A time without an offset is UTC; an offset is honoured.
    assert await calls.ids(since="2026-11-20T11:00:00") == ["live-here@pbx", "c3@pbx"]
    assert await calls.ids(since="2026-11-20T12:00:00+01:00") == ["live-here@pbx", "c3@pbx"]
    # live=true: live calls of every replica, stored or not; live=false: the others.
    assert await calls.ids(live="true") == ["live-there@pbx", "live-here@pbx"]
    assert await calls.ids(live="true", caller="+1555@y") == ["live-there@pbx"]
    assert await calls.ids(live="false") == ["c3@pbx", "c2@pbx", "c1@pbx"]
    assert await calls.ids(live="false", limit=1, offset=1) == ["c2@pbx"]
    assert await calls.ids(outcome="no-such-outcome") == []


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"direction": "sideways"}, "direction"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01"}, "until"),
        ({"since": "2026-11-21T00:00:00Z", "until": "2026-11-20T00:00:00Z"}, "since"),
        ({"live": "maybe"}, "live"),
        ({"caller": "   "}, "caller"),
        ({"agent": "x" * 300}, "agent"),
        ({"outcome": "a\x00b"}, "outcome"),
        ({"since": "9999-12-31T23:00:00-05:00"}, "since"),
    ],
)
async def test_bad_filter_values_are_a_clear_400(calls: Calls, params: dict, named: str) -> None:
    response = await calls.get("/api/calls", **params)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and named in error["message"]


async def test_detail_has_transcript_trace_tools_events_errors_workflow_goals(calls: Calls) -> None:
    response = await calls.get("/api/calls/c1@pbx")
    assert response.status_code == 200
    call = response.json()
    assert call["live"] is False and call["outcome"] == "completed"
    assert call["transcript"] == [{"speaker": "caller", "text": "My printer is out of paper."}]
    assert call["turns"][0]["caller_text"] == "My printer is out of paper."
    assert call["tool_calls"] == [
        {"turn_index": 1, "name": "printer_status", "ok": True, "error": None}
    ]
    assert call["events"][0]["kind"] == "barge_in"
    assert call["errors"][0]["stage"] == "tts"
    assert call["workflow"] == WORKFLOW and call["goals"] == GOALS
    assert call["recording_url"] is None
    plain = (await calls.get("/api/calls/c2@pbx")).json()
    assert plain["workflow"] is None and plain["goals"] is None


async def test_live_calls_here_and_on_another_replica(calls: Calls) -> None:
    here = (await calls.get("/api/calls/live-here@pbx")).json()
    assert here["live"] is True and here["outcome"] == "in_progress"
    assert here["transcript"][0]["text"] == "Hi, this is Maya."
    there = await calls.get("/api/calls/live-there@pbx")
    assert there.status_code == 200
    assert there.json()["live"] is True and there.json()["caller"] == "sip:+1555@y"
    # Once it ends there it is no longer live anywhere.
    await calls.registry.untrack("live-there@pbx", outcome="completed")
    assert (await calls.get("/api/calls/live-there@pbx")).status_code == 404
    assert await calls.ids(live="true") == ["live-here@pbx"]


async def test_recording_download_and_its_url(calls: Calls) -> None:
    missing = await calls.get("/api/calls/c1@pbx/recording")
    assert missing.status_code == 404 and "no recording" in missing.json()["error"]["message"]
    in_progress = await calls.get("/api/calls/live-here@pbx/recording")
    assert in_progress.status_code == 404
    assert "in progress" in in_progress.json()["error"]["message"]
    unknown = await calls.get("/api/calls/nobody/recording")
    assert unknown.status_code == 404 and "nobody" in unknown.json()["error"]["message"]
    # A finished call's recording, where RecordingCall leaves it.
    path = recording_file("c1@pbx")
    assert path.parent == calls.recordings
    path.parent.mkdir(parents=True)
    tone = (np.sin(np.arange(8000) * 2 * np.pi * 440 / 8000) * 8000).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(np.stack([tone, np.zeros_like(tone)], axis=1).tobytes())
    detail = (await calls.get("/api/calls/c1@pbx")).json()
    assert detail["recording_url"] == "/api/calls/c1%40pbx/recording"
    response = await calls.get(detail["recording_url"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/wav"
    assert response.content == path.read_bytes()
    with wave.open(io.BytesIO(response.content)) as got:
        assert (got.getnchannels(), got.getframerate(), got.getnframes()) == (2, 8000, 8000)
    assert (await calls.get(detail["recording_url"], headers={})).status_code == 401


async def test_unknown_call_is_404(calls: Calls) -> None:
    response = await calls.get("/api/calls/no-such-call")
    assert response.status_code == 404
    assert "no-such-call" in response.json()["error"]["message"]


async def test_without_a_control_plane_the_calls_routes_are_open(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'calls.db'}"
    async with CallRecordStore(url, spool_dir=tmp_path / "spool", retry_interval_s=0) as store:
        await store.save(stored("open-1"))
        app = agent_app(store=store, live_sessions=dict, health=lambda: (True, {}))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://agent.test") as client:
            response = await client.get("/api/calls")
            assert [c["call_id"] for c in response.json()["calls"]] == ["open-1"]
