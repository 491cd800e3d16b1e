"""Silero VAD on real speech: espeak-ng, clean 16 kHz and 8 kHz through a mu-law line."""

from __future__ import annotations

import numpy as np
import pytest

import models
from agent.audio.vad import SileroVAD, VADFrame
from serving.base import BadInput, EngineError
from tests.speech import phone_roundtrip, speak

TEXT = "Hello, my receipt printer stopped printing this morning."
PAD_S = 1.0


@pytest.fixture(scope="module")
def vad_model():
    return models.resolve("silero-vad")


def _padded_speech(rate: int, phone: bool) -> tuple[np.ndarray, float, float]:
    """Speech with PAD_S of silence either side, and where the voice truly starts/ends."""
    pcm, _ = speak(TEXT, rate)
    if phone:
        pcm, _ = phone_roundtrip(pcm, rate)
    voiced = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 300)
    pcm = pcm[voiced[0] : voiced[-1] + 1]
    pad = np.zeros(int(PAD_S * rate), dtype=np.int16)
    return np.concatenate([pad, pcm, pad]), PAD_S, PAD_S + pcm.size / rate


def _feed_in_chunks(vad: SileroVAD, pcm: np.ndarray, chunk: int) -> list[VADFrame]:
    frames: list[VADFrame] = []
    for i in range(0, pcm.size, chunk):
        frames += vad.process(pcm[i : i + chunk])
    return frames


@pytest.mark.parametrize(
    ("rate", "phone"), [(16000, False), (8000, True)], ids=["16k-clean", "8k-mulaw"]
)
def test_finds_speech_and_silence(vad_model, rate, phone):
    audio, start, end = _padded_speech(rate, phone)
    vad = SileroVAD(vad_model, sample_rate=rate)
    # 20 ms chunks, as the telephony delivers them: the VAD buffers to its 32 ms frame.
    frames = _feed_in_chunks(vad, audio, rate // 50)

    assert len(frames) == audio.size // vad.frame_samples
    assert frames[1].start_s == pytest.approx(0.032)
    speech = [f for f in frames if f.probability >= 0.5]
    assert speech, "no speech found in espeak speech"
    assert abs(speech[0].start_s - start) <= 0.1
    assert abs(speech[-1].end_s - end) <= 0.15

    # Silence well away from the speech is silence, every frame of it.
    silent = [f for f in frames if f.end_s < start - 0.05 or f.start_s > end + 0.2]
    assert silent and max(f.probability for f in silent) < 0.2
    # Most of the spoken part is speech (espeak leaves short gaps between words).
    inside = [f for f in frames if f.start_s >= start and f.end_s <= end]
    assert np.mean([f.probability >= 0.5 for f in inside]) > 0.8


def test_chunk_size_does_not_change_the_result(vad_model):
    audio, _, _ = _padded_speech(8000, phone=True)
    whole = SileroVAD(vad_model, 8000).process(audio)
    odd_chunks = _feed_in_chunks(SileroVAD(vad_model, 8000), audio, 97)
    assert [f.start_s for f in whole] == [f.start_s for f in odd_chunks]
    np.testing.assert_allclose(
        [f.probability for f in whole], [f.probability for f in odd_chunks], atol=1e-5
    )


def test_reset_forgets_state_and_clock(vad_model):
    audio, _, _ = _padded_speech(16000, phone=False)
    vad = SileroVAD(vad_model, 16000)
    first = vad.process(audio)
    vad.process(np.zeros(100, dtype=np.int16))  # leaves a partial frame behind
    vad.reset()
    again = vad.process(audio)
    assert [f.start_s for f in again] == [f.start_s for f in first]
    np.testing.assert_allclose(
        [f.probability for f in again], [f.probability for f in first], atol=1e-6
    )


def test_float_input_matches_int16(vad_model):
    audio, _, _ = _padded_speech(16000, phone=False)
    as_int = SileroVAD(vad_model, 16000).process(audio)
    as_float = SileroVAD(vad_model, 16000).process(audio.astype(np.float32) / 32768.0)
    np.testing.assert_allclose(
        [f.probability for f in as_int], [f.probability for f in as_float], atol=1e-6
    )


def test_hysteresis_keeps_speech_through_a_dip(vad_model):
    vad = SileroVAD(vad_model, 16000, threshold=0.5)
    assert not vad.is_speech(0.45, speaking=False)
    assert vad.is_speech(0.45, speaking=True)
    assert not vad.is_speech(0.2, speaking=True)


def test_bad_input_is_a_clear_error(vad_model, tmp_path):
    vad = SileroVAD(vad_model, 16000)
    with pytest.raises(BadInput, match="mono"):
        vad.process(np.zeros((2, 512), dtype=np.int16))
    with pytest.raises(BadInput, match="int16 or float"):
        vad.process(np.zeros(512, dtype=np.int32))
    with pytest.raises(BadInput, match="NaN"):
        vad.process(np.full(512, np.nan, dtype=np.float32))
    with pytest.raises(BadInput, match="8000 or 16000"):
        SileroVAD(vad_model, 44100)
    with pytest.raises(EngineError, match="not found"):
        SileroVAD(tmp_path / "missing.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    with pytest.raises(EngineError, match=str(broken)):
        SileroVAD(broken)
    # The stream is still usable after a rejected chunk.
    assert len(vad.process(np.zeros(512, dtype=np.int16))) == 1


def test_speech_after_a_minute_of_silence_is_still_found(vad_model):
    # A caller on hold or silent for a long time: the next words must not be missed.
    speech, _ = phone_roundtrip(speak("Can you help me reset my receipt printer?", 8000)[0], 8000)
    fresh = SileroVAD(vad_model, 8000).process(speech)
    vad = SileroVAD(vad_model, 8000)
    assert max(f.probability for f in vad.process(np.zeros(60 * 8000, np.int16))) < 0.1
    after = vad.process(speech)
    fresh_share = np.mean([f.probability >= 0.5 for f in fresh])
    after_share = np.mean([f.probability >= 0.5 for f in after])
    assert after_share >= fresh_share - 0.05
