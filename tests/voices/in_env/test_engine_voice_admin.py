"""EngineVoiceAdmin on the real Chatterbox engine (random weights): what the voices API
relies on. A clone is computed from espeak-ng speech, stored, preloaded in this replica
and in a fresh one, previewed as a WAV, and removed (unloaded, files gone)."""

from __future__ import annotations

import asyncio
import hashlib
import io
from pathlib import Path

import pytest
import soundfile as sf

from agent.controlplane.voice_admin import EngineVoiceAdmin, voice_admin_for
from serving.base import BadInput, UnknownVoice
from tests.speech import speak
from tests.voices.conftest import REFERENCE_TEXT, encode


@pytest.fixture(scope="module")
def reference() -> bytes:
    return encode(*speak(REFERENCE_TEXT, rate=16000), "WAV")


def test_clone_preload_preview_remove(make_engine, reference, tmp_path):
    voices_dir = tmp_path / "voices"
    engine = make_engine(voices_dir)
    admin = voice_admin_for(engine)
    assert isinstance(admin, EngineVoiceAdmin) and admin.supports_cloning

    clone = asyncio.run(admin.add("alice", reference, name="Alice"))
    assert (clone.id, clone.name, clone.engine) == ("alice", "Alice", "chatterbox")
    conds = Path(clone.conds_path)
    assert conds.is_file() and conds.parent == voices_dir
    assert hashlib.sha256(conds.read_bytes()).hexdigest() == clone.conds_sha256
    assert clone.source_sha256 == hashlib.sha256(reference).hexdigest()
    assert 5 < clone.duration_s < 30
    assert "alice" in engine.voices()  # preloaded here at once

    replica = make_engine(voices_dir)  # another replica starting later loads it too
    assert "alice" in replica.voices()

    wav = asyncio.run(admin.preview("alice", "Your printer is back online."))
    pcm, rate = sf.read(io.BytesIO(wav), dtype="int16")
    assert rate == 24_000 and len(pcm) > 0.1 * rate

    asyncio.run(admin.remove("alice"))
    assert "alice" not in engine.voices()
    assert not conds.exists()
    with pytest.raises(UnknownVoice):
        asyncio.run(admin.preview("alice"))
    asyncio.run(admin.remove("alice"))  # idempotent


def test_bad_reference_is_bad_input_and_nothing_is_stored(make_engine, tmp_path):
    voices_dir = tmp_path / "voices"
    admin = voice_admin_for(make_engine(voices_dir))
    short = encode(*speak("Too short.", rate=16000), "WAV")
    with pytest.raises(BadInput, match="at least"):
        asyncio.run(admin.add("bob", short))
    assert not voices_dir.exists() or not any(voices_dir.iterdir())
