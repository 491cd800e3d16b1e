"""Generated requests (schemathesis) against the console routes: none gets a 5xx.

The console runs in a real uvicorn on loopback (port range 19250-19499) with the real
embedded LLM, so valid messages really reach the model; replies are kept short
(max_tokens) to bound the run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from fastapi import FastAPI

from agent.controlplane.api import build_router
from agent.controlplane.console import build_console_router
from agent.controlplane.db import ControlPlaneStore
from agent.session.config import SessionOptions
from serving.llm.llama_cpp_engine import LlamaCppLLM
from tests.controlplane.conftest import mint_key
from tests.controlplane.console_fixtures import LLM_MODEL
from tests.fuzzing import fuzz_operations
from tests.serving import model_path
from tests.voices.conftest import serve_in_thread

EXAMPLES_PER_OPERATION = 25


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
    try:
        with serve_in_thread(app) as base_url:
            yield base_url, admin, app.openapi()
    finally:
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
    statuses = fuzz_operations(
        operations, base_url, admin, examples=EXAMPLES_PER_OPERATION, timeout_s=120
    )
    print("\nstatuses:", dict(statuses))
    assert {200, 404, 422} <= set(statuses), statuses
