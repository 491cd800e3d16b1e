"""The voices API cloning through a separate serving app (HttpVoiceAdmin -> serving's
/v1/audio/voices routes), both real uvicorn servers on 127.0.0.1, cpu profile (espeak-ng)."""

from __future__ import annotations

import httpx
import pytest

from agent.controlplane.models import Voice
from agent.controlplane.voice_admin import CloningUnsupported, HttpVoiceAdmin
from serving.base import EngineError
from serving.http_app import Engines, ServingState, build_app
from serving.tts.espeak_engine import EspeakTTS
from tests.voices.conftest import encode, free_port, serve_in_thread


@pytest.fixture(scope="module")
def serving_url():
    app = build_app(ServingState(engines=Engines(tts=EspeakTTS())))
    with serve_in_thread(app) as url:
        yield url


async def test_serving_routes_refuse_cloning_on_a_non_cloning_engine(serving_url, reference_speech):
    wav = encode(*reference_speech, "WAV")
    async with httpx.AsyncClient(base_url=serving_url, timeout=30) as client:
        added = await client.post(
            "/v1/audio/voices", data={"voice_id": "alice"}, files={"file": ("a.wav", wav)}
        )
        assert added.status_code == 409
        assert added.json()["error"]["type"] == "cloning_unsupported"
        assert "espeak" in added.json()["error"]["message"]
        removed = await client.delete("/v1/audio/voices/alice")
        assert removed.status_code == 409
        # The ordinary routes are untouched.
        voices = await client.get("/v1/audio/voices")
        assert voices.status_code == 200 and "en-us" in voices.json()["voices"]


async def test_http_admin_maps_the_refusal(serving_url, reference_speech):
    admin = HttpVoiceAdmin(serving_url, timeout_s=30)
    with pytest.raises(CloningUnsupported, match="espeak"):
        await admin.add("alice", encode(*reference_speech, "WAV"))
    await admin.remove("alice")  # nothing loaded there: no error
    wav = await admin.preview("en-us", "Hello.")  # an engine voice speaks through it
    assert wav[:4] == b"RIFF"


async def test_api_through_the_serving_app_refuses_and_stores_nothing(
    make_api, serving_url, reference_speech
):
    async with make_api(HttpVoiceAdmin(serving_url, timeout_s=30)) as api:
        response = await api.client.post(
            "/api/voices",
            headers=api.admin,
            files={"file": ("ref.wav", encode(*reference_speech, "WAV"))},
            data={"voice_id": "alice"},
        )
        assert response.status_code == 409
        assert "does not support voice cloning" in response.json()["detail"]
        listing = await api.client.get("/api/voices", headers=api.reader)
        assert listing.json()["total"] == 0

        async with api.store.session() as s:
            s.add(Voice(id="bob", name="Bob", conds_path="/x", sha256="0" * 64))
        preview = await api.client.post("/api/voices/bob/preview", headers=api.admin)
        assert preview.status_code == 422 and "bob" in str(preview.json()["detail"])
        deleted = await api.client.delete("/api/voices/bob", headers=api.admin)
        assert deleted.status_code == 204


async def test_unreachable_tts_server_is_502_and_nothing_stored(make_api, reference_speech):
    async with make_api(HttpVoiceAdmin(f"http://127.0.0.1:{free_port()}", timeout_s=5)) as api:
        response = await api.client.post(
            "/api/voices",
            headers=api.admin,
            files={"file": ("ref.wav", encode(*reference_speech, "WAV"))},
            data={"voice_id": "alice"},
        )
        assert response.status_code == 502
        assert "unreachable" in response.json()["detail"]
        assert (await api.client.get("/api/voices", headers=api.reader)).json()["total"] == 0


def test_engine_error_is_the_base_of_the_refusal():
    assert issubclass(CloningUnsupported, EngineError)
