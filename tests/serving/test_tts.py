"""Piper and espeak-ng TTS: what they say is what Whisper hears, they stream sentence by
sentence, stop when cancelled, and refuse bad requests clearly. Also the sentence
splitter that feeds them."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest

from serving.base import AudioChunk, BadInput, EngineError, TTSEngine, UnknownVoice
from serving.stt import FasterWhisperSTT
from serving.text import SentenceBuffer, split_sentences
from serving.tts import EspeakTTS, PiperTTS
from tests.serving import model_path
from tests.speech import phone_roundtrip, wer, words

REPLY = (
    "Thanks for calling store support. Please unplug the receipt printer. "
    "Wait until the green light turns off, then plug it back in."
)
LONG_REPLY = " ".join(
    f"Step {n}: check the cable behind register {n}, then tell me what you see."
    for n in ("one", "two", "three", "four", "five", "six")
)


@pytest.fixture(scope="module")
def piper() -> PiperTTS:
    return PiperTTS(model_path("piper-joe-medium"))


@pytest.fixture(scope="module")
def espeak() -> EspeakTTS:
    return EspeakTTS()


@pytest.fixture(scope="module")
def stt() -> FasterWhisperSTT:
    return FasterWhisperSTT(model_path("whisper-tiny.en"))


@pytest.fixture(params=["piper", "espeak"])
def tts(request, piper, espeak) -> PiperTTS | EspeakTTS:
    return {"piper": piper, "espeak": espeak}[request.param]


async def _collect(stream) -> list[AudioChunk]:
    return [chunk async for chunk in stream]


def _join(chunks: list[AudioChunk]) -> tuple[np.ndarray, int]:
    rates = {c.sample_rate for c in chunks}
    assert len(rates) == 1
    return np.concatenate([c.pcm for c in chunks]), rates.pop()


def test_engines_follow_the_protocol(piper, espeak):
    assert isinstance(piper, TTSEngine) and isinstance(espeak, TTSEngine)


async def test_speech_says_the_text(tts, stt):
    chunks = await _collect(tts.synthesize(REPLY))
    assert len(chunks) == 3  # one per sentence or clause
    for chunk in chunks:
        assert chunk.pcm.dtype == np.int16 and chunk.pcm.ndim == 1
        assert chunk.sample_rate == 22050
        assert np.abs(chunk.pcm.astype(np.int32)).max() > 3000
    pcm, rate = _join(chunks)
    heard = (await stt.transcribe(pcm, rate)).text
    assert wer(REPLY, heard) <= 0.2, heard


async def test_piper_speech_survives_a_phone_line(piper, stt):
    pcm, rate = _join(await _collect(piper.synthesize(REPLY)))
    phone, phone_rate = phone_roundtrip(pcm, rate)
    heard = (await stt.transcribe(phone, phone_rate)).text
    assert wer(REPLY, heard) <= 0.35, heard


async def test_first_chunk_is_only_the_first_sentence(tts, stt):
    stream = tts.synthesize(LONG_REPLY)
    first = await anext(stream)
    await stream.aclose()
    heard = set(words((await stt.transcribe(first.pcm, first.sample_rate)).text))
    assert {"one", "cable"} <= heard, heard
    assert not {"two", "six"} & heard, heard


async def test_piper_streams_before_the_text_is_done(piper, monkeypatch):
    calls: list[str] = []
    original = piper._voice.synthesize

    def counting(text, *args, **kwargs):
        calls.append(text)
        return original(text, *args, **kwargs)

    monkeypatch.setattr(piper._voice, "synthesize", counting)
    stream = piper.synthesize(LONG_REPLY)
    await anext(stream)
    assert len(calls) == 1  # the first chunk came before the rest was synthesized
    rest = await _collect(stream)
    assert len(rest) == len(calls) - 1 >= 5


async def test_cancelled_piper_stream_stops_synthesizing(piper, monkeypatch):
    calls: list[str] = []
    original = piper._voice.synthesize

    def counting(text, *args, **kwargs):
        calls.append(text)
        return original(text, *args, **kwargs)

    monkeypatch.setattr(piper._voice, "synthesize", counting)
    got_first = asyncio.Event()

    async def consume() -> None:
        async for _ in piper.synthesize(LONG_REPLY):
            got_first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_first.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(1.0)  # a sentence in flight may finish; nothing after it starts
    assert len(calls) <= 2, calls


def _espeak_children() -> list[int]:
    """Our own child processes running espeak-ng."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == os.getpid() and comm.startswith("espeak"):
            found.append(int(entry.name))
    return found


async def test_cancelled_espeak_stream_leaves_no_process(espeak):
    chunks: list[AudioChunk] = []

    async def consume() -> None:
        async for chunk in espeak.synthesize(LONG_REPLY * 3):
            chunks.append(chunk)
            await asyncio.sleep(0)

    task = asyncio.create_task(consume())
    for _ in range(200):  # bounded wait for the first chunk
        if chunks:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 1 <= len(chunks) < 18
    assert _espeak_children() == []


async def test_voices_and_unknown_voice(piper, espeak):
    assert piper.voices() == ["en_US-joe-medium"]
    assert await _collect(piper.synthesize("Hello.", "en_US-joe-medium"))
    with pytest.raises(UnknownVoice, match="nobody"):
        piper.synthesize("Hello.", "nobody")

    assert {"en-us", "en-gb"} <= set(espeak.voices())
    assert await _collect(espeak.synthesize("Hello.", "en-gb"))
    assert await _collect(espeak.synthesize("Hello.", "en-us+f3"))
    for bad in ("xx-nope", "en-us+nonsense", "en-us; rm -rf /"):
        with pytest.raises(UnknownVoice):
            espeak.synthesize("Hello.", bad)
    with pytest.raises(UnknownVoice):
        EspeakTTS(voice="klingon")


@pytest.mark.parametrize(
    "text", ["", "   \n\t", "... !!", "x" * 6000], ids=["empty", "space", "punct", "huge"]
)
def test_unspeakable_text_is_refused(tts, text):
    with pytest.raises(BadInput):
        tts.synthesize(text)


async def test_text_that_looks_like_options_is_spoken(espeak, stt):
    # Text reaches espeak-ng through stdin, so a leading dash is just text.
    pcm, rate = _join(await _collect(espeak.synthesize("-v xx --help Hello there.")))
    assert len(pcm) > rate * 0.5


def test_missing_piper_voice_file_is_an_engine_error(tmp_path):
    with pytest.raises(EngineError, match="not found"):
        PiperTTS(tmp_path / "missing.onnx")


# ---------------------------------------------------------------- sentence splitting


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello there. How are you?", ["Hello there.", "How are you?"]),
        ("Dr. Smith will call. Mr. Jones too.", ["Dr. Smith will call.", "Mr. Jones too."]),
        (
            "It costs $3.50 today. Pay at 4.30 p.m. please.",
            ["It costs $3.50 today.", "Pay at 4.30 p.m. please."],
        ),
        (
            "Bring tools, e.g. a screwdriver. Thanks!",
            ["Bring tools, e.g. a screwdriver.", "Thanks!"],
        ),
        ("Ask J. R. Smith. He knows.", ["Ask J. R. Smith.", "He knows."]),
        ('He said "stop." Then left.', ['He said "stop."', "Then left."]),
        ("Wait... okay! Done?! Yes", ["Wait...", "okay!", "Done?!", "Yes"]),
        ("No final punctuation", ["No final punctuation"]),
        ("Line one\n\nLine two", ["Line one", "Line two"]),
        ("Version 1.2.3 is out. Update it.", ["Version 1.2.3 is out.", "Update it."]),
    ],
)
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


def test_long_sentence_is_cut_at_clause_boundaries():
    text = (
        "Please unplug the printer, wait about thirty seconds so its buffer clears completely, "
        "then plug it back in and press the feed button twice; if the light stays red, "
        "tell me exactly what the small display on the front says."
    )
    parts = split_sentences(text, max_chars=80)
    assert len(parts) > 1 and all(len(p) <= 80 for p in parts)
    assert " ".join(parts) == text
    assert all(p[-1] in ",;." for p in parts)


def test_sentence_buffer_releases_sentences_as_tokens_arrive():
    buf = SentenceBuffer()
    released = []
    tokens = "Dr. Lee fixed it. The printer works now. Anything else?".split(" ")
    for i, token in enumerate(tokens):
        released.append((i, buf.push(token + " ")))
    got = [(i, s) for i, ss in released for s in ss]
    # "fixed it." is only released once the next word shows it was a sentence end.
    assert got == [(4, "Dr. Lee fixed it."), (8, "The printer works now.")]
    assert buf.flush() == ["Anything else?"]
    assert buf.flush() == []
