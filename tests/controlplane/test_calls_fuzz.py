"""Property-based run over the calls routes' OpenAPI operations (schemathesis): with a
read key, no generated request gets a 5xx and responses match the documented schema.

The agent app as `trunkline serve` builds it (control plane mounted), in a real uvicorn
on a loopback port, over SQLite with a few stored calls and a recording.
"""

from __future__ import annotations

import asyncio
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis

from agent.app.api import agent_app
from agent.app.live_registry import InProcessRegistry
from agent.controlplane.db import ControlPlaneStore
from agent.records import CallRecord, CallRecordStore
from agent.session.recording import recording_file
from tests.controlplane.conftest import mint_key
from tests.fuzzing import fuzz_operations
from tests.voices.conftest import serve_in_thread

EXAMPLES_PER_OPERATION = 40


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, dict, dict]]:
    monkeypatch.setenv("TRUNKLINE_HOME", str(tmp_path))
    url = f"sqlite:///{tmp_path / 'trunkline.db'}"

    async def seed() -> str:
        async with (
            ControlPlaneStore(url) as control_plane,
            CallRecordStore(url, spool_dir=tmp_path / "spool", retry_interval_s=0) as store,
        ):
            for n in range(3):
                record = CallRecord(call_id=f"call-{n}", caller=f"sip:+1555000{n}@127.0.0.1")
                record.ended_at, record.outcome = record.started_at, "completed"
                await store.save(record)
            return await mint_key(control_plane, "read")

    key = asyncio.run(seed())
    path = recording_file("call-1")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\0\0\0\0" * 800)
    store = CallRecordStore(url, spool_dir=tmp_path / "spool", retry_interval_s=0)
    app = agent_app(
        store=store,
        live_sessions=dict,
        health=lambda: (True, {"status": "ok"}),
        control_plane=ControlPlaneStore(url),
        live_registry=InProcessRegistry(replica="fuzz"),
    )
    with serve_in_thread(app) as base_url:
        yield base_url, {"Authorization": f"Bearer {key}"}, app.openapi()


@pytest.mark.slow
def test_generated_calls_requests_never_get_a_server_error(served) -> None:
    base_url, headers, openapi = served
    schema = schemathesis.openapi.from_dict(openapi)
    operations = [
        op
        for op in (result.ok() for result in schema.get_all_operations())
        if op.path.startswith("/api/calls")
    ]
    assert {op.path for op in operations} == {
        "/api/calls",
        "/api/calls/{call_id}",
        "/api/calls/{call_id}/recording",
    }
    statuses = fuzz_operations(
        operations, base_url, headers, examples=EXAMPLES_PER_OPERATION, timeout_s=30
    )
    assert {200, 400, 404} <= set(statuses), statuses
