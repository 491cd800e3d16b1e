"""serving.audio on real speech files: decoding uploads, resampling, WAV encoding, and
clear errors for the broken files users actually send."""

from __future__ import annotations

import io
import subprocess

import numpy as np
import pytest
import soundfile as sf

from serving.audio import decode_audio, encode_wav, resample, to_float32
from serving.base import BadInput
from tests.speech import speak

TEXT = "Please check the receipt printer."


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    return speak(TEXT, rate=22050)


def _encode(pcm: np.ndarray, rate: int, fmt: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, pcm, rate, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG", "MP3"])
def test_decodes_common_upload_formats(speech, fmt):
    pcm, rate = speech
    decoded, got_rate = decode_audio(_encode(pcm, rate, fmt))
    assert got_rate == rate
    assert decoded.dtype == np.int16 and decoded.ndim == 1
    # Lossy codecs add priming/padding frames; the length stays within 10 %.
    assert abs(len(decoded) - len(pcm)) < 0.1 * len(pcm)
    assert np.abs(decoded.astype(np.int32)).max() > 3000  # still speech, not silence


def test_wav_decodes_exactly(speech):
    pcm, rate = speech
    decoded, got_rate = decode_audio(encode_wav(pcm, rate))
    assert got_rate == rate
    np.testing.assert_array_equal(decoded, pcm)


def test_stereo_is_mixed_to_mono(speech):
    pcm, rate = speech
    stereo = np.stack([pcm, np.zeros_like(pcm)], axis=1)
    decoded, _ = decode_audio(_encode(stereo, rate, "WAV"))
    assert decoded.ndim == 1 and len(decoded) == len(pcm)
    expected = (pcm.astype(np.float32) / 2).astype(np.int32)
    assert np.abs(decoded.astype(np.int32) - expected).max() <= 2


def test_streamed_wav_with_placeholder_sizes_decodes():
    # espeak-ng --stdout (like other pipe writers) cannot fill in the RIFF sizes.
    data = subprocess.run(
        ["espeak-ng", "--stdout", TEXT], capture_output=True, check=True, timeout=30
    ).stdout
    decoded, rate = decode_audio(data)
    assert rate == 22050
    assert len(decoded) == (len(data) - 44) // 2


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda wav: b"", "empty"),
        (lambda wav: b"this is not audio at all, just some text" * 10, "could not be decoded"),
        (lambda wav: wav[: len(wav) // 2], "truncated"),
        (lambda wav: wav[:30], "could not be decoded"),
        (lambda wav: wav[:44], "truncated"),
        (lambda wav: encode_wav(np.zeros(0, np.int16), 8000), "no samples"),
        (lambda wav: wav[:44] + bytes(range(256)) * 4, "truncated"),
    ],
    ids=[
        "empty",
        "garbage",
        "truncated-half",
        "truncated-header",
        "header-only",
        "zero-length",
        "corrupt-body",
    ],
)
def test_broken_wav_uploads_are_refused_clearly(speech, make, message):
    pcm, rate = speech
    with pytest.raises(BadInput, match=message):
        decode_audio(make(encode_wav(pcm, rate)))


def test_truncated_compressed_upload_is_refused(speech):
    pcm, rate = speech
    for fmt in ("FLAC", "MP3"):
        data = _encode(pcm, rate, fmt)
        with pytest.raises(BadInput, match=r"truncated|corrupt|decoded"):
            decode_audio(data[: len(data) // 2])


def test_absurdly_long_audio_is_refused():
    # 11 minutes of 8 kHz silence compresses to almost nothing; the header gives it away.
    data = _encode(np.zeros(8000 * 660, dtype=np.int16), 8000, "FLAC")
    assert len(data) < 1_000_000
    with pytest.raises(BadInput, match="too long"):
        decode_audio(data)
    with pytest.raises(BadInput, match="too long"):
        decode_audio(_encode(np.zeros(8000 * 3, dtype=np.int16), 8000, "WAV"), max_s=2)


@pytest.mark.parametrize("to_rate", [8000, 16000, 24000, 44100, 48000])
def test_resample_keeps_duration_dtype_and_level(speech, to_rate):
    pcm, rate = speech
    out = resample(pcm, rate, to_rate)
    assert out.dtype == np.int16
    assert abs(len(out) - len(pcm) * to_rate / rate) <= 2
    # Speech energy sits below 4 kHz, so even 8 kHz keeps most of the level.
    rms_in = np.sqrt(np.mean(to_float32(pcm) ** 2))
    rms_out = np.sqrt(np.mean(to_float32(out) ** 2))
    assert 0.7 * rms_in < rms_out < 1.3 * rms_in


def test_resample_float_and_bad_rates(speech):
    pcm, rate = speech
    out = resample(to_float32(pcm), rate, 16000)
    assert out.dtype == np.float32 and np.abs(out).max() <= 1.0
    with pytest.raises(BadInput, match="sample rate"):
        resample(pcm, 0, 16000)
    with pytest.raises(BadInput, match="sample rate"):
        resample(pcm, rate, 10_000_000)


def test_to_float32_scales_int16():
    pcm = np.array([-32768, 0, 16384, 32767], dtype=np.int16)
    np.testing.assert_allclose(to_float32(pcm), [-1.0, 0.0, 0.5, 32767 / 32768])
    with pytest.raises(BadInput):
        to_float32(np.array(["a"]))
