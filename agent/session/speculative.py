"""Speculative transcription: start STT at the caller's first pause, not at end of turn.

The turn detector says SpeechPaused after a short silence, well before it decides
the turn is over (Smart Turn, or the longer silence fallback). Transcribing the audio
so far right then means the transcript is ready, or nearly, when TurnEnded comes. If
the caller speaks again (SpeechResumed) the guess is dropped; if the turn ends with
no more speech, TurnEnded carries the same speech (the same end of speech; at most
some more trailing silence, the post-roll) and the guess is used as is.

At most one guess runs per call: a new pause replaces the old one. A failed guess is
never an error of the call: the session transcribes the turn again the normal way
and handles that failure as usual.
"""

from __future__ import annotations

import asyncio
import contextlib

from agent.audio import SpeechPaused, TurnEnded
from serving.base import STTEngine, Transcript

MAX_EXTRA_S = 0.3  # more trailing audio than this: not the same utterance, transcribe again


class SpeculativeSTT:
    def __init__(self, stt: STTEngine, timeout_s: float) -> None:
        self.stt = stt
        self.timeout_s = timeout_s
        self._guess: tuple[SpeechPaused, asyncio.Task[Transcript]] | None = None
        self._matched: tuple[TurnEnded, asyncio.Task[Transcript]] | None = None
        self.started = 0  # guesses started / used, for traces and tests
        self.used = 0

    def on_pause(self, event: SpeechPaused) -> None:
        self.cancel()
        task = asyncio.get_running_loop().create_task(
            asyncio.wait_for(self.stt.transcribe(event.pcm, event.sample_rate), self.timeout_s)
        )
        task.add_done_callback(_consume)
        self._guess = (event, task)
        self.started += 1

    def on_resume(self) -> None:
        self.cancel()

    def on_turn_end(self, event: TurnEnded) -> None:
        """Keep the guess for `event` if it was made on the same audio; else drop it."""
        guess, self._guess = self._guess, None
        self._drop_matched()
        if guess is None:
            return
        paused, task = guess
        if paused.speech_end_s == event.speech_end_s and _same_speech(paused, event):
            self._matched = (event, task)
        else:
            task.cancel()

    async def take(self, event: TurnEnded) -> Transcript | None:
        """The guess's transcript for `event`, or None (no guess, or it was for other
        audio or dropped): then transcribe the turn the normal way. Raises what the
        engine raised (TimeoutError after `timeout_s`)."""
        matched = self._matched
        if matched is None or matched[0] is not event:
            return None
        self._matched = None
        try:
            transcript = await matched[1]
        except asyncio.CancelledError:
            if matched[1].cancelled() and not _current_cancelling():
                return None  # the guess was dropped, not us
            raise
        # Any other failure is the engine's on this very audio, within the same timeout:
        # it propagates like a failure of the normal transcription would.
        self.used += 1
        return transcript

    def cancel(self) -> None:
        if self._guess is not None:
            self._guess[1].cancel()
            self._guess = None

    def close(self) -> None:
        self.cancel()
        self._drop_matched()

    def _drop_matched(self) -> None:
        if self._matched is not None:
            self._matched[1].cancel()
            self._matched = None


def _same_speech(paused: SpeechPaused, ended: TurnEnded) -> bool:
    # No speech since the pause (same end of speech): the turn's audio is the guess's plus
    # at most the rest of the post-roll, silence by the VAD's judgement. A pause shorter
    # than the post-roll is what lets the guess start early.
    extra_s = (ended.pcm.size - paused.pcm.size) / ended.sample_rate
    return paused.sample_rate == ended.sample_rate and 0.0 <= extra_s <= MAX_EXTRA_S


def _current_cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _consume(task: asyncio.Task[Transcript]) -> None:
    # A dropped guess may fail or be cancelled unobserved: that is expected.
    if not task.cancelled():
        with contextlib.suppress(Exception):
            task.exception()
