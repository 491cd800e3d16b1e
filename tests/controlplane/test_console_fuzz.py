"""Generated requests (schemathesis) against the console routes: none gets a 5xx.

The console runs in a real uvicorn on loopback (port range 19250-19499) with the real
embedded LLM, so valid messages really reach the model; replies are kept short
(max_tokens) to bound the run.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
import uvicorn
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from agent.controlplane.api import build_router
from agent.controlplane.console import build_console_router
from agent.controlplane.db import ControlPlaneStore
from agent.session.config import SessionOptions
from serving.llm.llama_cpp_engine import LlamaCppLLM
from tests.controlplane.conftest import mint_key
from tests.controlplane.console_fixtures import LLM_MODEL, free_port
from tests.serving import model_path

EXAMPLES_PER_OPERATION = 25
START_TIMEOUT_S = 30


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], dict]]:
    url = f"sqlite:///{tmp_path / 'cp.db'}"

    async def prepare() -> str:
        async with ControlPlaneStore(url) as store:
            return await mint_key(store, "admin")

    admin = {"Authorization": f"Bearer {asyncio.run(prepare())}"}
    llm = LlamaCppLLM(model_path(LLM_MODEL), n_ctx=4096)
    store = ControlPlaneStore(url)
    app = FastAPI()
    app.include_router(build_router(store), prefix="/api")
    options = SessionOptions(max_tokens=16)
    app.include_router(build_console_router(store, llm, base_options=options), prefix="/api")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, name="console-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        assert thread.is_alive(), "uvicorn exited during start-up"
        assert time.monotonic() < deadline, f"uvicorn did not start in {START_TIMEOUT_S} s"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", admin, app.openapi()
    finally:
        server.should_exit = True
        thread.join(timeout=START_TIMEOUT_S)
        llm.close()


@pytest.mark.slow
def test_generated_console_requests_never_get_a_server_error(
    served: tuple[str, dict[str, str], dict],
) -> None:
    base_url, admin, openapi = served
    with httpx.Client(base_url=base_url, headers=admin, timeout=60) as client:
        assert client.post("/api/agents", json={"name": "seed"}).status_code == 201
    schema = schemathesis.openapi.from_dict(openapi)
    operations = [
        result.ok() for result in schema.get_all_operations() if "/console" in result.ok().path
    ]
    assert len(operations) == 4
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
                response = case.call(base_url=base_url, headers=admin, timeout=120)
                statuses[response.status_code] += 1
                case.validate_response(
                    response, checks=[not_a_server_error, response_schema_conformance]
                )

            check()
    print("\nstatuses:", dict(statuses))
    assert {200, 404, 422} <= set(statuses), statuses
