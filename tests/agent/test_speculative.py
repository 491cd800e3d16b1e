"""Speculative STT on real phone speech: the transcription started at the caller's first
pause is the turn's transcript when the turn ends there, and is dropped when the caller
goes on (faster-whisper tiny.en, the real turn detector, espeak-ng speech)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

import models
from agent.audio import SpeechPaused, SpeechResumed, TurnDetector, TurnEnded
from agent.session import SessionOptions
from agent.session.speculative import SpeculativeSTT
from serving.base import EngineError, Transcript
from serving.stt.faster_whisper_engine import FasterWhisperSTT
from tests.agent.session_peer import caller_speech

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def stt() -> FasterWhisperSTT:
    return FasterWhisperSTT(models.resolve("whisper-tiny.en"))


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * 8000), np.int16)


async def run_turn(speculative: SpeculativeSTT, audio: np.ndarray) -> tuple[list, TurnEnded]:
    """Feed `audio` as 20 ms phone frames, wiring the detector's events as the session does."""
    detector = TurnDetector.from_models(8000, SessionOptions().turn)  # as in a call
    events: list = []
    for i in range(0, audio.size, 160):
        for event in await detector.feed(audio[i : i + 160]):
            events.append(event)
            if isinstance(event, SpeechPaused):
                speculative.on_pause(event)
            elif isinstance(event, SpeechResumed):
                speculative.on_resume()
            elif isinstance(event, TurnEnded):
                speculative.on_turn_end(event)
                return events, event
        await asyncio.sleep(0)
    raise AssertionError(f"no end of turn: {events}")


def words(text: str) -> set[str]:
    return set(text.lower().replace(".", " ").replace("?", " ").split())


async def test_the_guess_made_at_the_pause_is_the_turns_transcript(stt):
    speculative = SpeculativeSTT(stt, timeout_s=10.0)
    question = caller_speech("How do I change the paper in my receipt printer?")
    _, ended = await run_turn(speculative, np.concatenate([silence(0.3), question, silence(1.5)]))
    assert speculative.started == 1
    transcript = await speculative.take(ended)
    assert transcript is not None and speculative.used == 1
    assert {"paper", "receipt", "printer"} <= words(transcript.text), transcript.text
    # It says what transcribing the whole turn afresh says (the turn's audio only has
    # a little more trailing silence).
    fresh = await stt.transcribe(ended.pcm, ended.sample_rate)
    assert words(transcript.text) == words(fresh.text), (transcript.text, fresh.text)
    assert await speculative.take(ended) is None  # used once


async def test_the_guess_is_dropped_when_the_caller_goes_on(stt):
    speculative = SpeculativeSTT(stt, timeout_s=10.0)
    first, second = caller_speech("I need help with my"), caller_speech("receipt printer.")
    audio = np.concatenate([silence(0.3), first, silence(0.5), second, silence(1.5)])
    events, ended = await run_turn(speculative, audio)
    assert any(isinstance(e, SpeechResumed) for e in events), events
    transcript = await speculative.take(ended)
    if transcript is not None:
        # A second pause (after "receipt printer") made a fresh guess of the whole turn.
        assert speculative.started >= 2 and "printer" in words(transcript.text)
    else:
        assert speculative.used == 0


class DeadSTT:
    """A speech-to-text server that has gone away."""

    name = "dead"

    async def transcribe(self, pcm: np.ndarray, sample_rate: int) -> Transcript:
        raise EngineError("connection refused")


async def test_a_failed_guess_fails_like_the_transcription_would():
    speculative = SpeculativeSTT(DeadSTT(), timeout_s=10.0)  # type: ignore[arg-type]
    question = caller_speech("My scanner does not beep.")
    _, ended = await run_turn(speculative, np.concatenate([silence(0.3), question, silence(1.5)]))
    with pytest.raises(EngineError):
        await speculative.take(ended)
