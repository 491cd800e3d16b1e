"""ChatterboxTTS on a random-weight checkpoint with the real shapes, on CPU.

Random weights say nothing intelligible, so these tests check what does not depend on
the weights: loading, cloning and storing voices, preloading them in a fresh replica,
per-request voices that never mix, streaming per sentence at 24 kHz, and bad input.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from chatterbox_samples import OTHER_REFERENCE_TEXT, REFERENCE_TEXT, reference_wav

from serving.base import AudioChunk, BadInput, EngineError, TTSEngine, UnknownVoice
from serving.tts.chatterbox_engine import SAMPLE_RATE, ChatterboxTTS

TWO_SENTENCES = "Your printer is back online. Please print a test receipt now."


async def collect(stream) -> list[AudioChunk]:
    return [chunk async for chunk in stream]


def joined(chunks: list[AudioChunk]) -> np.ndarray:
    return np.concatenate([c.pcm for c in chunks])


@pytest.fixture(scope="module")
def references() -> dict[str, bytes]:
    return {
        "alice": reference_wav(REFERENCE_TEXT, voice="en-us"),
        "bob": reference_wav(OTHER_REFERENCE_TEXT, voice="en-gb"),
    }


@pytest.fixture(scope="module")
def cloned(make_engine, references, tmp_path_factory):
    """One engine with two voices cloned from espeak-ng speech, and their store folder."""
    voices_dir = tmp_path_factory.mktemp("voices")
    engine = make_engine(voices_dir)
    infos = {
        voice_id: asyncio.run(engine.add_voice(voice_id, wav, name=f"{voice_id} (test)"))
        for voice_id, wav in references.items()
    }
    return engine, voices_dir, infos


@pytest.fixture(scope="module")
def solo(cloned) -> dict[str, list[AudioChunk]]:
    """Each voice speaking TWO_SENTENCES with nothing else running."""
    engine, _, _ = cloned
    return {v: asyncio.run(collect(engine.synthesize(TWO_SENTENCES, v))) for v in ("alice", "bob")}


@pytest.fixture(scope="module")
def replica(cloned, make_engine, tmp_path_factory):
    """A fresh engine (another replica) on a copy of the voices folder, in which a third
    voice, "carol", has a damaged conditionals file."""
    _, voices_dir, _ = cloned
    copy_dir = tmp_path_factory.mktemp("replica-voices")
    for path in voices_dir.iterdir():
        shutil.copy(path, copy_dir / path.name)
    meta = json.loads((copy_dir / "alice.json").read_text())
    (copy_dir / "carol.json").write_text(json.dumps({**meta, "id": "carol"}))
    damaged = bytearray((copy_dir / "alice.conds.pt").read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    (copy_dir / "carol.conds.pt").write_bytes(bytes(damaged))
    return make_engine(copy_dir)


def test_loads_the_checkpoint_with_from_local(cloned):
    engine, _, _ = cloned
    assert isinstance(engine, TTSEngine)
    assert engine.name == "chatterbox"
    assert engine.sample_rate == SAMPLE_RATE == 24000


def test_incomplete_checkpoint_is_a_clear_error(tmp_path, checkpoint):
    for name in ("ve.safetensors", "t3_cfg.safetensors", "tokenizer.json"):
        shutil.copy(checkpoint / name, tmp_path / name)
    with pytest.raises(EngineError, match=r"incomplete: missing s3gen\.safetensors"):
        ChatterboxTTS(tmp_path, "cpu", tmp_path / "voices")


def test_damaged_checkpoint_is_a_clear_error(tmp_path, checkpoint):
    for name in ("ve.safetensors", "s3gen.safetensors", "tokenizer.json"):
        (tmp_path / name).symlink_to(checkpoint / name)
    (tmp_path / "t3_cfg.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(EngineError, match=r"checkpoint .* could not be loaded"):
        ChatterboxTTS(tmp_path, "cpu", tmp_path / "voices")


def test_cloned_voice_is_stored_with_metadata(cloned, references):
    engine, voices_dir, infos = cloned
    assert engine.voices() == ["alice", "bob"]
    for voice_id, wav in references.items():
        info = infos[voice_id]
        assert info.id == voice_id and info.name == f"{voice_id} (test)"
        assert info.source_sha256 == hashlib.sha256(wav).hexdigest()
        duration = sf.info(io.BytesIO(wav)).duration
        assert info.duration_s == pytest.approx(duration, abs=0.01)
        assert info.created.endswith("+00:00")
        conds = voices_dir / f"{voice_id}.conds.pt"
        assert hashlib.sha256(conds.read_bytes()).hexdigest() == info.conds_sha256
        assert json.loads((voices_dir / f"{voice_id}.json").read_text())["id"] == voice_id
    assert [i.id for i in engine.voice_info()] == ["alice", "bob"]


def test_streams_24khz_int16_one_chunk_per_sentence(solo):
    for chunks in solo.values():
        assert len(chunks) == 2  # two sentences, each streamed as soon as it is ready
        for chunk in chunks:
            assert chunk.sample_rate == 24000
            assert chunk.pcm.dtype == np.int16 and chunk.pcm.ndim == 1
            # The random checkpoint stops after ~30 speech tokens (25 per second).
            assert 0.4 < len(chunk.pcm) / 24000 < 5.0
            assert np.abs(chunk.pcm).max() > 0


def test_fresh_replica_preloads_clones_and_speaks_identically(replica, solo):
    assert replica.voices() == ["alice", "bob"]
    chunks = asyncio.run(collect(replica.synthesize(TWO_SENTENCES, "alice")))
    np.testing.assert_array_equal(joined(chunks), joined(solo["alice"]))


def test_damaged_clone_is_reported_and_the_others_still_speak(replica):
    with pytest.raises(UnknownVoice, match=r"'carol' failed to load: .*sha256"):
        replica.synthesize("Hello.", "carol")


def test_two_voices_in_parallel_do_not_mix(cloned, solo):
    engine, _, _ = cloned
    # Different voices really sound different, else this test would prove nothing.
    assert not np.array_equal(joined(solo["alice"]), joined(solo["bob"]))

    async def both():
        return await asyncio.gather(
            collect(engine.synthesize(TWO_SENTENCES, "alice")),
            collect(engine.synthesize(TWO_SENTENCES, "bob")),
        )

    alice, bob = asyncio.run(both())
    np.testing.assert_array_equal(joined(alice), joined(solo["alice"]))
    np.testing.assert_array_equal(joined(bob), joined(solo["bob"]))


def test_closing_the_stream_stops_after_the_sentence_in_flight(cloned, monkeypatch):
    engine, _, _ = cloned
    spoken: list[str] = []
    original = engine._speak_sentence

    def counting(sentence, conds, index):
        spoken.append(sentence)
        return original(sentence, conds, index)

    monkeypatch.setattr(engine, "_speak_sentence", counting)

    async def barge_in():
        stream = engine.synthesize("First sentence. Second sentence. Third sentence.", "bob")
        first = await anext(stream)
        await stream.aclose()  # the caller spoke: nothing more is wanted
        return first

    first = asyncio.run(barge_in())
    assert first.pcm.size > 0
    assert spoken == ["First sentence."]


def test_add_then_remove_a_voice(replica, references):
    info = asyncio.run(replica.add_voice("dave", references["bob"]))
    assert info.id == "dave" and "dave" in replica.voices()
    replica.remove_voice("dave")
    assert "dave" not in replica.voices()
    assert not (replica.voices_dir / "dave.json").exists()
    assert not (replica.voices_dir / "dave.conds.pt").exists()
    with pytest.raises(UnknownVoice, match="unknown voice 'dave'"):
        replica.synthesize("Hello.", "dave")
    with pytest.raises(UnknownVoice, match="unknown voice 'dave'"):
        replica.remove_voice("dave")


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("   \n ", "empty"), ("?!...", "nothing to speak"), ("a" * 5001, "too long")],
)
def test_bad_text_is_bad_input(cloned, text, message):
    engine, _, _ = cloned
    with pytest.raises(BadInput, match=message):
        engine.synthesize(text, "alice")


def test_unknown_or_missing_voice_is_unknown_voice(cloned):
    engine, _, _ = cloned
    with pytest.raises(UnknownVoice, match=r"unknown voice 'zed'.*\['alice', 'bob'\]"):
        engine.synthesize("Hello.", "zed")
    with pytest.raises(UnknownVoice, match="no voice given"):
        engine.synthesize("Hello.")


def _wav(pcm: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, pcm, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_bad_reference_audio_is_bad_input(cloned, references):
    engine, voices_dir, _ = cloned
    speech, rate = sf.read(io.BytesIO(references["alice"]), dtype="int16")
    cases = [
        (("short", _wav(speech[: 3 * rate], rate)), "3.0 s; a voice clone needs at least 5 s"),
        (("silent", _wav(np.zeros(6 * rate, np.int16), rate)), "silent"),
        (("corrupt", b"RIFF\x00\x00\x00\x00WAVEnot audio at all"), "could not be decoded"),
        (("truncated", references["alice"][:-5000]), "truncated"),
        (("nopcmrate", speech), "needs its sample rate"),
        (("Bad Id!", references["alice"]), "invalid voice id"),
        (("alice", references["alice"]), "already exists"),
    ]
    for (voice_id, audio), message in cases:
        with pytest.raises(BadInput, match=message):
            asyncio.run(engine.add_voice(voice_id, audio))
    with pytest.raises(BadInput, match="mono"):
        asyncio.run(engine.add_voice("stereo", np.stack([speech, speech], axis=1), rate))
    # Nothing half-made was left behind, and the good voices are untouched.
    assert sorted(p.name for p in voices_dir.iterdir()) == [
        "alice.conds.pt",
        "alice.json",
        "bob.conds.pt",
        "bob.json",
    ]
    assert engine.voices() == ["alice", "bob"]
