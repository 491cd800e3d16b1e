"""POST /api/voices limits: uploads per API key per minute (429 + Retry-After), and the
size cap enforced while the body streams in (413), on SQLite with real espeak speech.

The cpu profile cannot clone, so an accepted upload ends in a clear 409 after its audio
was checked: that is the expensive part the rate limit protects.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import soundfile as sf
from fastapi import FastAPI

from agent.controlplane.db import ControlPlaneStore
from agent.controlplane.rate_limit import RateLimit, limit_from_env
from agent.controlplane.voice_admin import voice_admin_for
from agent.controlplane.voices_api import (
    MAX_REQUEST_BYTES,
    MAX_UPLOAD_BYTES,
    UPLOADS_PER_MINUTE_ENV,
    build_voices_router,
)
from serving.tts.espeak_engine import EspeakTTS
from tests.controlplane.conftest import mint_key
from tests.speech import speak

SPEECH = (
    "Good morning, this is the store support line. I am recording a sample of my voice "
    "so that the assistant can speak with it on the phone."
)


@pytest.fixture(scope="module")
def reference_wav() -> bytes:
    pcm, rate = speak(SPEECH, rate=16000)
    assert len(pcm) / rate > 5.5
    out = io.BytesIO()
    sf.write(out, pcm, rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


@dataclass
class Voices:
    client: httpx.AsyncClient
    admin: dict[str, str]
    other_admin: dict[str, str]

    async def upload(self, data: bytes, headers: dict[str, str], voice_id: str = "alice"):
        return await self.client.post(
            "/api/voices",
            headers=headers,
            files={"file": ("ref.wav", data, "audio/wav")},
            data={"voice_id": voice_id},
        )


async def _voices(tmp_path: Path, **router_kwargs: object) -> AsyncIterator[Voices]:
    async with ControlPlaneStore(f"sqlite:///{tmp_path / 'cp.db'}") as store:
        app = FastAPI()
        router = build_voices_router(store, voice_admin_for(EspeakTTS()), **router_kwargs)
        app.include_router(router, prefix="/api")
        admin = {"Authorization": f"Bearer {await mint_key(store, 'admin')}"}
        other = {"Authorization": f"Bearer {await mint_key(store, 'admin')}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://cp.test", timeout=60
        ) as client:
            yield Voices(client, admin, other)


@pytest.fixture
async def voices(tmp_path: Path) -> AsyncIterator[Voices]:
    async for api in _voices(tmp_path, uploads_per_minute=3):
        yield api


async def test_a_key_gets_429_with_retry_after_past_its_uploads_per_minute(
    voices: Voices, reference_wav: bytes
) -> None:
    # Malformed requests are refused before any audio work and cost nothing.
    for _ in range(4):
        bad = await voices.upload(reference_wav, voices.admin, voice_id="Not A Valid Id")
        assert bad.status_code == 422
    for _ in range(3):
        assert (await voices.upload(reference_wav, voices.admin)).status_code == 409
    refused = await voices.upload(reference_wav, voices.admin)
    assert refused.status_code == 429, refused.text
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "at most 3 a minute" in refused.json()["detail"]
    # Another key has its own allowance.
    assert (await voices.upload(reference_wav, voices.other_admin)).status_code == 409
    # Reading is not limited.
    listing = await voices.client.get("/api/voices", headers=voices.admin)
    assert listing.status_code == 200


async def test_the_limit_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference_wav: bytes
) -> None:
    monkeypatch.setenv(UPLOADS_PER_MINUTE_ENV, "1")
    async for api in _voices(tmp_path):
        assert (await api.upload(reference_wav, api.admin)).status_code == 409
        assert (await api.upload(reference_wav, api.admin)).status_code == 429
    monkeypatch.setenv(UPLOADS_PER_MINUTE_ENV, "ten")
    with pytest.raises(ValueError, match=UPLOADS_PER_MINUTE_ENV):
        limit_from_env(UPLOADS_PER_MINUTE_ENV, 10)


def test_the_window_slides() -> None:
    now = [1000.0]
    limit = RateLimit(2, window_s=60, clock=lambda: now[0])
    assert limit.take("k") is None and limit.take("k") is None
    now[0] += 20
    assert limit.take("k") == 40  # the first upload leaves the window in 40 s
    now[0] += 40
    assert limit.take("k") is None
    assert RateLimit(0).take("k") is None  # 0: unlimited


def _chunked_multipart(size: int) -> tuple[dict[str, str], AsyncIterator[bytes]]:
    """A multipart upload of `size` bytes streamed without a Content-Length."""
    boundary = "trunkline-test-boundary"
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="voice_id"\r\n\r\nalice\r\n'
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="big.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()

    async def body() -> AsyncIterator[bytes]:
        yield head
        chunk = b"\x00" * (256 * 1024)
        for _ in range(size // len(chunk)):
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}, body()


async def test_an_oversized_upload_is_cut_off_while_it_streams(voices: Voices) -> None:
    headers, body = _chunked_multipart(MAX_REQUEST_BYTES + 1024 * 1024)
    response = await voices.client.post(
        "/api/voices", headers={**voices.admin, **headers}, content=body
    )
    assert "content-length" not in response.request.headers  # really streamed
    assert response.status_code == 413, response.text
    assert "10 MB" in response.json()["detail"]


async def test_a_file_just_over_the_limit_is_413_and_costs_no_upload(
    voices: Voices, reference_wav: bytes
) -> None:
    just_over = reference_wav + b"\x00" * (MAX_UPLOAD_BYTES + 1 - len(reference_wav))
    for _ in range(4):  # refused on size, before the rate limit counts it
        response = await voices.upload(just_over, voices.admin)
        assert response.status_code == 413 and "10 MB" in response.json()["detail"]
