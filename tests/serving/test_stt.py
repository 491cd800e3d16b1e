"""FasterWhisperSTT with the embedded Whisper tiny.en on real (espeak-ng) speech:
clean, after a G.711 phone line, at every common sample rate, silence, long audio and
bad input."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from serving.audio import to_float32
from serving.base import BadInput, STTEngine
from serving.stt import FasterWhisperSTT, WindowPolicy
from tests.serving import model_path
from tests.speech import phone_roundtrip, speak, wer, words

SENTENCES = [
    "Please unplug the receipt printer and wait a moment.",
    "The printer at the front register is showing a red light.",
    "I already restarted the computer but nothing changed.",
    "Can you send a technician to the store tomorrow morning?",
    "The paper is stuck inside the printer again.",
    "Hello, my name is Maya and I will help you today.",
]


@pytest.fixture(scope="module")
def stt() -> FasterWhisperSTT:
    return FasterWhisperSTT(model_path("whisper-tiny.en"))


@pytest.fixture(scope="module")
def clean_speech() -> list[tuple[str, np.ndarray]]:
    return [(text, speak(text, 16000)[0]) for text in SENTENCES]


def test_is_an_stt_engine(stt):
    assert isinstance(stt, STTEngine)


async def test_clean_speech_is_transcribed(stt, clean_speech):
    errors = []
    for text, pcm in clean_speech:
        result = await stt.transcribe(pcm, 16000)
        errors.append(wer(text, result.text))
        assert result.language == "en"
        assert result.audio_s == pytest.approx(len(pcm) / 16000, abs=0.01)
        assert len(result.segments) == 1 and result.segments[0].text == result.text
        assert {"encode", "decode", "total"} <= result.timings.keys()
    # tiny.en gets these exactly on most runs; allow the odd slip (which one slips depends
    # on the CPU: on an AMD EPYC "nothing changed" came out "must have been changed").
    assert np.mean(errors) <= 0.1, errors
    assert max(errors) <= 0.4, errors


async def test_phone_line_speech_is_mostly_transcribed(stt, clean_speech):
    errors = []
    for text, pcm in clean_speech:
        phone, rate = phone_roundtrip(pcm, 16000)
        errors.append(wer(text, (await stt.transcribe(phone, rate)).text))
    # Measured ~0.3 mean WER for tiny.en on synthetic 8 kHz mu-law speech (the 30 s
    # window scores the same): a known limit of the smallest model, not of windowing.
    assert np.mean(errors) <= 0.45, errors


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 24000, 44100, 48000])
async def test_common_sample_rates(stt, rate):
    text = "The paper is stuck inside the printer again."
    pcm, got_rate = speak(text, rate)
    assert got_rate == rate
    heard = words((await stt.transcribe(pcm, rate)).text)
    assert {"paper", "stuck", "inside", "printer", "again"} <= set(heard), heard


async def test_float_input_is_accepted(stt, clean_speech):
    text, pcm = clean_speech[1]
    assert wer(text, (await stt.transcribe(to_float32(pcm), 16000)).text) <= 0.2


@pytest.mark.parametrize("kind", ["silence", "line-noise"])
async def test_no_speech_gives_empty_text(stt, kind):
    if kind == "silence":
        pcm = np.zeros(16000 * 3, dtype=np.int16)
    else:
        pcm = np.random.default_rng(7).normal(0, 200, 16000 * 3).astype(np.int16)
    result = await stt.transcribe(pcm, 16000)
    assert result.text == ""
    assert result.segments == ()


async def test_audio_longer_than_one_window_is_chunked(stt):
    pause = np.zeros(16000, dtype=np.int16)
    parts = []
    for text in SENTENCES * 2:
        parts += [speak(text, 16000)[0], pause]
    pcm = np.concatenate(parts)
    assert len(pcm) / 16000 > 35
    result = await stt.transcribe(pcm, 16000)
    assert len(result.segments) >= 2
    starts = [s.start_s for s in result.segments]
    assert starts == sorted(starts) and result.segments[-1].end_s == pytest.approx(len(pcm) / 16000)
    assert wer(" ".join(SENTENCES * 2), result.text) <= 0.2, result.text


def test_window_policy_follows_the_measured_rule():
    policy = WindowPolicy()
    assert policy.window_for(0.5) == 10  # never under 10 s: shorter windows lose words
    assert policy.window_for(3.0) == 10
    assert policy.window_for(8.5) == 15  # utterance + 2 s, rounded up to 5 s
    assert policy.window_for(13.0) == 15
    assert policy.window_for(27.0) == 30
    assert policy.window_for(40.0) == 30  # the model's limit


async def test_concurrent_requests_are_serialised_and_correct(stt, clean_speech):
    (text_a, a), (text_b, b) = clean_speech[1], clean_speech[4]
    ra, rb = await asyncio.gather(stt.transcribe(a, 16000), stt.transcribe(b, 16000))
    assert wer(text_a, ra.text) <= 0.2 and wer(text_b, rb.text) <= 0.2


async def test_event_loop_keeps_running_during_transcription(stt, clean_speech):
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        for _ in range(2000):  # bounded; cancelled long before
            ticks += 1
            await asyncio.sleep(0.005)

    beat = asyncio.create_task(heartbeat())
    await stt.transcribe(clean_speech[0][1], 16000)
    beat.cancel()
    assert ticks >= 5  # the loop was free while the model ran in its thread


@pytest.mark.parametrize(
    ("pcm", "rate", "message"),
    [
        (np.zeros(0, np.int16), 16000, "empty"),
        (np.zeros((16000, 2), np.int16), 16000, "mono"),
        (np.zeros(16000, np.int16), 0, "sample rate"),
        (np.zeros(16000, np.int16), 1000, "sample rate"),
        (np.full(16000, np.nan, np.float32), 16000, "NaN"),
        (np.zeros(16000, np.int64), 16000, "int16 or float"),
        ([0, 1, 2], 16000, "numpy array"),
    ],
    ids=["empty", "stereo", "zero-rate", "low-rate", "nan", "int64", "list"],
)
async def test_bad_input_is_refused_clearly(stt, pcm, rate, message):
    with pytest.raises(BadInput, match=message):
        await stt.transcribe(pcm, rate)


async def test_absurdly_long_audio_is_refused():
    short_limit = FasterWhisperSTT(model_path("whisper-tiny.en"), max_audio_s=5)
    with pytest.raises(BadInput, match="too long"):
        await short_limit.transcribe(np.zeros(16000 * 6, np.int16), 16000)
