"""Voice API fixtures: the real control-plane database (SQLite file) and real speech.

The API's imports are made inside the fixture: tests/voices/in_env/ runs on the
Chatterbox env's Python, which has no FastAPI or SQLAlchemy.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from tests.speech import phone_roundtrip, speak

REFERENCE_TEXT = (
    "Good morning, thank you for calling store support. My name is Maya, and I will help "
    "you get your receipt printer working again. Please tell me what you see on the screen."
)


@dataclass
class VoicesApi:
    store: Any  # ControlPlaneStore
    client: Any  # httpx.AsyncClient
    admin: dict[str, str]
    reader: dict[str, str]


async def _key(store: Any, scope: str) -> dict[str, str]:
    from agent.controlplane import apikeys

    async with store.session() as session:
        key = (await apikeys.create_key(session, scope=scope, name=f"test-{scope}")).key
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def make_api(tmp_path: Path):
    """`make_api(admin)` -> an API over a fresh SQLite database cloning with `admin`."""

    @asynccontextmanager
    async def build(tts_admin: Any) -> AsyncIterator[VoicesApi]:
        import httpx
        from fastapi import FastAPI

        from agent.controlplane.db import ControlPlaneStore
        from agent.controlplane.voices_api import build_voices_router

        async with ControlPlaneStore(f"sqlite:///{tmp_path / 'cp.db'}") as store:
            app = FastAPI()
            app.include_router(build_voices_router(store, tts_admin), prefix="/api")
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://cp.test", timeout=60
            ) as client:
                yield VoicesApi(
                    store, client, await _key(store, "admin"), await _key(store, "read")
                )

    return build


@pytest.fixture(scope="session")
def reference_speech() -> tuple[np.ndarray, int]:
    """About 10 s of espeak-ng speech at 16 kHz, int16."""
    pcm, rate = speak(REFERENCE_TEXT, rate=16000)
    assert 5.5 < len(pcm) / rate < 30, "espeak-ng reference speech has an unexpected length"
    return pcm, rate


def encode(pcm: np.ndarray, rate: int, fmt: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, pcm, rate, format=fmt, subtype=None if fmt != "WAV" else "PCM_16")
    return buf.getvalue()


@pytest.fixture(scope="session")
def phone_speech(reference_speech: tuple[np.ndarray, int]) -> tuple[np.ndarray, int]:
    """The reference speech as it sounds after a phone line (8 kHz mu-law and back)."""
    return phone_roundtrip(*reference_speech)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Run `app` with uvicorn on a free 127.0.0.1 port; yields its base URL."""
    import threading
    import time

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
