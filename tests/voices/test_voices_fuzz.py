"""Property-based run over the voices routes' OpenAPI document (schemathesis), SQLite,
cpu profile: no generated request gets a 5xx, and responses match the documented schema."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI

from agent.controlplane import apikeys
from agent.controlplane.db import ControlPlaneStore
from agent.controlplane.models import Voice
from agent.controlplane.voice_admin import voice_admin_for
from agent.controlplane.voices_api import build_voices_router
from serving.tts.espeak_engine import EspeakTTS
from tests.fuzzing import fuzz_operations
from tests.voices.conftest import serve_in_thread

EXAMPLES_PER_OPERATION = 25


@pytest.mark.slow
def test_generated_requests_never_get_a_server_error(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'cp.db'}"

    async def prepare() -> str:
        async with ControlPlaneStore(db_url) as store, store.session() as s:
            s.add(Voice(id="seed", name="Seed", conds_path="/x", sha256="0" * 64))
            return (await apikeys.create_key(s, scope="admin")).key

    headers = {"Authorization": f"Bearer {asyncio.run(prepare())}"}
    app = FastAPI()
    app.include_router(
        build_voices_router(ControlPlaneStore(db_url), voice_admin_for(EspeakTTS())),
        prefix="/api",
    )
    with serve_in_thread(app) as base_url:
        schema = schemathesis.openapi.from_dict(app.openapi())
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == 5
        statuses = fuzz_operations(
            operations, base_url, headers, examples=EXAMPLES_PER_OPERATION, timeout_s=30
        )
    assert {200, 404, 422} <= set(statuses), statuses
