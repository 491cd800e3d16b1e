"""Property-based run over the calls routes' OpenAPI operations (schemathesis): with a
read key, no generated request gets a 5xx and responses match the documented schema.

The agent app as `trunkline serve` builds it (control plane mounted), in a real uvicorn
on a loopback port, over SQLite with a few stored calls and a recording.
"""

from __future__ import annotations

import asyncio
import threading
import time
import wave
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from agent.app.api import agent_app
from agent.app.live_registry import InProcessRegistry
from agent.controlplane.db import ControlPlaneStore
from agent.records import CallRecord, CallRecordStore
from agent.session.recording import recording_file
from tests.controlplane.conftest import mint_key
from tests.voices.conftest import free_port

EXAMPLES_PER_OPERATION = 40
SERVER_START_TIMEOUT_S = 30


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
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, name="calls-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while not server.started:
        assert thread.is_alive(), "uvicorn exited during start-up"
        assert time.monotonic() < deadline, f"uvicorn did not start in {SERVER_START_TIMEOUT_S} s"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {key}"}, app.openapi()
    finally:
        server.should_exit = True
        thread.join(timeout=SERVER_START_TIMEOUT_S)


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
    statuses: Counter[int] = Counter()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: schemathesis.Case) -> None:
                response = case.call(base_url=base_url, headers=headers, timeout=30)
                statuses[response.status_code] += 1
                case.validate_response(
                    response, checks=[not_a_server_error, response_schema_conformance]
                )

            check()
    assert {200, 400, 404} <= set(statuses), statuses
