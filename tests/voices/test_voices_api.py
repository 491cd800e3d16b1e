"""The voices API end to end on SQLite, with real espeak-ng speech, on the cpu profile.

The cpu profile's TTS (espeak-ng here; Piper likewise) cannot clone: a good upload is
refused with a clear 409, bad uploads get the 4xx naming what is wrong before the engine
is ever asked, and nothing reaches the catalogue either way. Cloning for real runs in the
Chatterbox env (test_voice_admin_chatterbox.py).
"""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest
import soundfile as sf

from agent.controlplane.models import Voice
from agent.controlplane.voice_admin import NoCloningVoiceAdmin, voice_admin_for
from serving.tts.espeak_engine import EspeakTTS
from tests.voices.conftest import encode


@pytest.fixture
async def api(make_api):
    async with make_api(voice_admin_for(EspeakTTS())) as api:
        yield api


async def _upload(api, data: bytes, filename: str = "ref.wav", voice_id: str = "alice", **kw):
    headers = kw.pop("headers", api.admin)
    return await api.client.post(
        "/api/voices",
        headers=headers,
        files={"file": (filename, data, "application/octet-stream")},
        data={"voice_id": voice_id, **kw},
    )


async def _assert_catalogue_empty(api) -> None:
    listing = await api.client.get("/api/voices", headers=api.reader)
    assert listing.status_code == 200
    assert listing.json()["items"] == [] and listing.json()["total"] == 0


def test_cpu_profile_engine_gets_the_refusing_admin():
    admin = voice_admin_for(EspeakTTS())
    assert isinstance(admin, NoCloningVoiceAdmin) and not admin.supports_cloning


@pytest.mark.parametrize("fmt,filename", [("WAV", "ref.wav"), ("FLAC", "ref.flac")])
async def test_good_upload_on_cpu_profile_is_refused_clearly(api, reference_speech, fmt, filename):
    data = encode(*reference_speech, fmt)
    response = await _upload(api, data, filename, name="Alice")
    assert response.status_code == 409
    assert "does not support voice cloning" in response.json()["detail"]
    assert "espeak" in response.json()["detail"]
    await _assert_catalogue_empty(api)


async def test_phone_quality_mp3_passes_validation(api, phone_speech):
    # 8 kHz mu-law round-tripped speech, as mp3: valid reference audio, so the refusal
    # comes from the engine (409), not from the audio checks (422).
    data = encode(*phone_speech, "MP3")
    response = await _upload(api, data, "call.mp3")
    assert response.status_code == 409, response.text
    await _assert_catalogue_empty(api)


def _truncated_wav(pcm: np.ndarray, rate: int) -> bytes:
    full = encode(pcm, rate, "WAV")
    return full[: len(full) // 2]


def _silence(rate: int = 16000, seconds: float = 8.0) -> bytes:
    return encode(np.zeros(int(rate * seconds), np.int16), rate, "WAV")


@pytest.mark.parametrize(
    "case,expected",
    [
        ("empty", "empty"),
        ("garbage", "could not be decoded"),
        ("truncated", "truncated"),
        ("too_short", "needs 5-60 s"),
        ("too_long", "too long"),
        ("silent", "silent"),
        ("wrong_type", "must be a .wav, .flac, .mp3 file"),
    ],
)
async def test_bad_audio_is_a_clear_422_and_nothing_is_stored(
    api, reference_speech, case, expected
):
    pcm, rate = reference_speech
    filename = "ref.wav"
    if case == "empty":
        data = b""
    elif case == "garbage":
        data = b"RIFF this is not audio at all " * 50
    elif case == "truncated":
        data = _truncated_wav(pcm, rate)
    elif case == "too_short":
        data = encode(pcm[: 2 * rate], rate, "WAV")
    elif case == "too_long":
        data = encode(np.tile(pcm, int(np.ceil(65 * rate / len(pcm)))), rate, "WAV")
    elif case == "silent":
        data = _silence()
    else:
        data, filename = encode(pcm, rate, "WAV"), "ref.txt"
    response = await _upload(api, data, filename)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert expected in error["msg"] and error["loc"][-1] == "file"
    await _assert_catalogue_empty(api)


async def test_upload_over_10_mb_is_413(api):
    # 11 MB of a real (noise) WAV file: refused on size before decoding.
    big = np.random.default_rng(0).integers(-3000, 3000, 11 * 1024 * 1024 // 2, dtype=np.int16)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(96000)
        w.writeframes(big.tobytes())
    response = await _upload(api, buf.getvalue())
    assert response.status_code == 413
    assert "10 MB" in response.json()["detail"]
    await _assert_catalogue_empty(api)


@pytest.mark.parametrize("voice_id", ["Bad Id", "-starts-with-dash", "x" * 65, ""])
async def test_bad_voice_id_is_422(api, reference_speech, voice_id):
    response = await _upload(api, encode(*reference_speech, "WAV"), voice_id=voice_id)
    assert response.status_code == 422
    await _assert_catalogue_empty(api)


async def test_auth_missing_key_401_read_key_cannot_write(api, reference_speech):
    data = encode(*reference_speech, "WAV")
    assert (await _upload(api, data, headers={})).status_code == 401
    assert (await _upload(api, data, headers=api.reader)).status_code == 403
    assert (await api.client.get("/api/voices")).status_code == 401
    assert (await api.client.delete("/api/voices/alice", headers=api.reader)).status_code == 403
    await _assert_catalogue_empty(api)


async def test_unknown_voice_is_404(api):
    for method, path in [
        ("GET", "/api/voices/nobody"),
        ("DELETE", "/api/voices/nobody"),
        ("POST", "/api/voices/nobody/preview"),
    ]:
        response = await api.client.request(method, path, headers=api.admin)
        assert response.status_code == 404, (method, path, response.text)
        assert "nobody" in response.json()["detail"]


async def test_voice_cloned_elsewhere_lists_refuses_preview_and_deletes(api, reference_speech):
    # A clone made on the gpu profile sharing this database: the cpu profile can show
    # and delete its catalogue entry, but cannot speak with it.
    async with api.store.session() as s:
        s.add(
            Voice(
                id="bob",
                name="Bob",
                engine="chatterbox",
                conds_path="/nonexistent/bob.conds.pt",
                sha256="0" * 64,
            )
        )
    listing = (await api.client.get("/api/voices", headers=api.reader)).json()
    assert [v["id"] for v in listing["items"]] == ["bob"]
    one = await api.client.get("/api/voices/bob", headers=api.reader)
    assert one.status_code == 200 and one.json()["name"] == "Bob"
    assert "conds_path" not in one.json()  # server paths are not the API's business

    preview = await api.client.post(
        "/api/voices/bob/preview", headers=api.admin, json={"text": "Hello there."}
    )
    assert preview.status_code == 409
    assert "does not support voice cloning" in preview.json()["detail"]

    duplicate = await _upload(api, encode(*reference_speech, "WAV"), voice_id="bob")
    assert duplicate.status_code == 409
    assert "already exists" in duplicate.json()["detail"]

    deleted = await api.client.delete("/api/voices/bob", headers=api.admin)
    assert deleted.status_code == 204
    assert (await api.client.get("/api/voices/bob", headers=api.reader)).status_code == 404
    await _assert_catalogue_empty(api)


async def test_preview_text_is_validated(api):
    async with api.store.session() as s:
        s.add(Voice(id="carol", name="Carol", conds_path="/x", sha256="0" * 64))
    for body in ({"text": ""}, {"text": "x" * 501}, {"text": "   "}):
        response = await api.client.post("/api/voices/carol/preview", headers=api.admin, json=body)
        assert response.status_code == 422, body


def test_reference_audio_decodes_with_soundfile(reference_speech):
    # Guards the fixture: the WAV we upload is what soundfile reads back.
    pcm, rate = reference_speech
    back, back_rate = sf.read(io.BytesIO(encode(pcm, rate, "WAV")), dtype="int16")
    assert back_rate == rate and np.array_equal(back, pcm)
