"""Property-based run over the OpenAPI document (schemathesis): no request gets a 5xx.

The API runs in a real uvicorn on a loopback port; every operation gets a bounded
number of generated requests (valid and deliberately invalid ones) with an admin
key, and every response must be below 500 and match the documented schema.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from agent.controlplane.db import ControlPlaneStore
from tests.controlplane.conftest import make_app, mint_key

EXAMPLES_PER_OPERATION = 25
SERVER_START_TIMEOUT_S = 30


@dataclass
class Served:
    base_url: str
    admin: dict[str, str]
    openapi: dict


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(db_url: str) -> Iterator[Served]:
    async def prepare() -> str:
        async with ControlPlaneStore(db_url) as store:  # migrates, mints the key
            return await mint_key(store, "admin")

    admin_key = asyncio.run(prepare())
    app = make_app(ControlPlaneStore(db_url))
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, name="controlplane-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while not server.started:
        assert thread.is_alive(), "uvicorn exited during start-up"
        assert time.monotonic() < deadline, f"uvicorn did not start in {SERVER_START_TIMEOUT_S} s"
        time.sleep(0.05)
    try:
        yield Served(
            base_url=f"http://127.0.0.1:{port}",
            admin={"Authorization": f"Bearer {admin_key}"},
            openapi=app.openapi(),
        )
    finally:
        server.should_exit = True
        thread.join(timeout=SERVER_START_TIMEOUT_S)


def _seed(served: Served) -> None:
    """One of everything, so generated ids sometimes hit real rows (id 1)."""
    with httpx.Client(base_url=served.base_url, headers=served.admin, timeout=30) as c:
        for path, body in [
            ("/api/templates", {"name": "seed"}),
            ("/api/agents", {"name": "seed", "template_id": 1}),
            ("/api/goals", {"name": "seed"}),
            ("/api/domains", {"domain_name": "seed", "knowledge_type": "fact", "content": "x"}),
            ("/api/instructions", {"agent_id": 1, "instruction_type": "do", "instruction": "x"}),
        ]:
            assert c.post(path, json=body).status_code == 201, path


@pytest.mark.slow
def test_generated_requests_never_get_a_server_error(served: Served) -> None:
    _seed(served)
    schema = schemathesis.openapi.from_dict(served.openapi)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25  # every route of the router is in the document
    statuses: Counter[int] = Counter()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                derandomize=True,  # the same cases on every run: a failure reproduces
                database=None,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: schemathesis.Case) -> None:
                response = case.call(base_url=served.base_url, headers=served.admin, timeout=30)
                statuses[response.status_code] += 1
                case.validate_response(
                    response, checks=[not_a_server_error, response_schema_conformance]
                )

            check()
    # The generator got past auth and validation into the handlers, not just bounced.
    assert {200, 201, 204, 404, 422} <= set(statuses), statuses
