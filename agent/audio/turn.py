"""End-of-turn detection for one call: VAD speech/silence plus Smart Turn, as events.

Fed the caller's audio in small frames (20 ms from the phone), `TurnDetector` emits:

- SpeechStarted  once speech has lasted `min_speech_s` (clicks, bumps and other short
                 noises never start a turn);
- SpeechPaused   at the first short silence (`pause_s`), with the audio so far, so the
                 session can start a speculative transcription;
- SpeechResumed  when the caller speaks again after a SpeechPaused (drop the speculation);
- TurnEnded      when the turn is over: Smart Turn judged it complete after `stop_s` of
                 silence, or silence reached `fallback_s` whatever the model said, or the
                 utterance hit `max_utterance_s`.

With `voice_events`, two earlier, unconfirmed events come too (barge-in uses them to
take the agent's audio off the wire at once and put it back if it was a blip):
- VoiceStarted   at the first speech frame outside a turn (not yet min_speech_s long);
- VoiceStopped   when that run of speech ended before it could start a turn.

Times are seconds of audio fed since the detector started (or was reset), so they
are exact and repeatable; TurnEnded also carries the wall-clock decision time for
the latency trace.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

import models
from agent.audio.smart_turn import SmartTurn
from agent.audio.vad import SileroVAD, VADFrame
from serving.audio import resample
from serving.base import BadInput

log = logging.getLogger(__name__)

TurnEndReason = Literal["smart_turn", "silence_fallback", "max_length"]


@dataclass(frozen=True)
class TurnOptions:
    """Turn-taking thresholds (seconds unless named otherwise)."""

    vad_threshold: float = 0.5
    min_speech_s: float = 0.2  # speech needed before it counts as the caller talking
    # Speech after a silence must last this long to count again: silero smears even a
    # 30 ms blip over up to 4 frames (128 ms), while a real word goes on longer.
    resume_min_s: float = 0.15
    pause_s: float = 0.2  # silence that emits SpeechPaused (speculative STT hook)
    stop_s: float = 0.2  # silence before the first Smart Turn check
    recheck_s: float = 0.3  # while "incomplete", ask Smart Turn again this often
    fallback_s: float = 1.0  # silence that ends the turn whatever Smart Turn says
    smart_turn_threshold: float = 0.5  # P(complete) above this ends the turn
    pre_roll_s: float = 0.3  # audio kept before the detected start (soft onsets)
    post_roll_s: float = 0.2  # audio kept after the last speech frame
    max_utterance_s: float = 30.0  # a turn longer than this is ended (bounded buffer)
    output_rate: int = 16000  # sample rate of the audio in SpeechPaused / TurnEnded
    voice_events: bool = False  # also emit VoiceStarted / VoiceStopped (see module doc)

    def __post_init__(self) -> None:
        for name in (
            "min_speech_s",
            "resume_min_s",
            "pause_s",
            "stop_s",
            "recheck_s",
            "fallback_s",
        ):
            if getattr(self, name) <= 0:
                raise BadInput(f"TurnOptions.{name} must be > 0, got {getattr(self, name)!r}")
        if self.pre_roll_s < 0 or self.post_roll_s < 0:
            raise BadInput("TurnOptions.pre_roll_s and post_roll_s must be >= 0")
        if self.fallback_s < self.stop_s:
            raise BadInput(
                f"TurnOptions.fallback_s ({self.fallback_s}) must be >= stop_s ({self.stop_s})"
            )
        if self.max_utterance_s <= self.min_speech_s:
            raise BadInput("TurnOptions.max_utterance_s must be longer than min_speech_s")
        if not 0.0 < self.vad_threshold < 1.0 or not 0.0 < self.smart_turn_threshold < 1.0:
            raise BadInput("TurnOptions thresholds must be in (0, 1)")


@dataclass(frozen=True)
class SpeechStarted:
    start_s: float  # where the speech began (start of its first VAD frame)
    at_s: float  # when it was confirmed (start_s + about min_speech_s)


@dataclass(frozen=True)
class VoiceStarted:
    start_s: float  # start of the first speech frame
    at_s: float  # end of that frame (when it was seen)


@dataclass(frozen=True)
class VoiceStopped:
    start_s: float
    at_s: float  # the frame that ended the run: it was too short to be a turn


@dataclass(frozen=True)
class SpeechPaused:
    speech_end_s: float
    at_s: float
    pcm: np.ndarray  # the utterance so far, mono int16 at sample_rate
    sample_rate: int


@dataclass(frozen=True)
class SpeechResumed:
    resumed_s: float
    at_s: float


@dataclass(frozen=True)
class TurnEnded:
    pcm: np.ndarray  # the whole utterance (with pre/post roll), mono int16 at sample_rate
    sample_rate: int
    speech_start_s: float
    speech_end_s: float
    decision_s: float  # stream time of the decision
    reason: TurnEndReason
    probability: float | None  # last Smart Turn score for this turn, None if never run
    decided_monotonic: float  # time.monotonic() at the decision, for latency traces


TurnEvent = SpeechStarted | SpeechPaused | SpeechResumed | TurnEnded | VoiceStarted | VoiceStopped


class _PcmBuffer:
    """Input-rate samples addressed by absolute stream index, dropped from the front."""

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self.start = 0  # stream index of the first sample held
        self.end = 0  # stream index one past the last sample held

    def append(self, pcm: np.ndarray) -> None:
        if pcm.size:
            self._chunks.append(pcm)
            self.end += pcm.size

    def drop_before(self, index: int) -> None:
        while self._chunks and self.start + self._chunks[0].size <= index:
            self.start += self._chunks.pop(0).size
        if self._chunks and self.start < index:
            self._chunks[0] = self._chunks[0][index - self.start :]
            self.start = index
        if not self._chunks:
            self.start = self.end

    def slice(self, begin: int, end: int) -> np.ndarray:
        begin, end = max(begin, self.start), min(end, self.end)
        if end <= begin:
            return np.zeros(0, dtype=np.int16)
        joined = np.concatenate(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        self._chunks = [joined]  # keep it joined: the next read is cheap
        return joined[begin - self.start : end - self.start].copy()


class TurnDetector:
    """Turn-taking state machine for one call's inbound audio.

    `feed()` must not be called concurrently (a lock serialises it). The VAD runs
    inline (well under a millisecond per 32 ms frame); Smart Turn (tens of ms) runs
    in a worker thread while `feed()` awaits it, so frames that arrive meanwhile wait
    in the caller's queue and the event loop stays free.
    """

    def __init__(
        self,
        vad_model: str | Path,
        smart_turn: SmartTurn | None,
        sample_rate: int = 8000,
        options: TurnOptions | None = None,
    ) -> None:
        """`sample_rate`: the caller audio's rate, 8000 (phone) or 16000; the VAD runs
        at it natively, and only whole utterances are resampled (for Smart Turn and
        the events). `smart_turn=None`: silence alone ends turns (after fallback_s)."""
        self.options = options or TurnOptions()
        self.vad = SileroVAD(vad_model, sample_rate, threshold=self.options.vad_threshold)
        self.smart_turn = smart_turn
        self.sample_rate = sample_rate
        self._lock = asyncio.Lock()
        self._smart_turn_failed = False
        self.reset()

    @classmethod
    def from_models(
        cls, sample_rate: int = 8000, options: TurnOptions | None = None
    ) -> TurnDetector:
        """A detector on the configured models ("silero-vad", "smart-turn-v3.2")."""
        smart_turn = SmartTurn(
            models.resolve("smart-turn-v3.2"),
            threshold=(options or TurnOptions()).smart_turn_threshold,
        )
        return cls(models.resolve("silero-vad"), smart_turn, sample_rate, options)

    # ------------------------------------------------------------ public

    @property
    def speaking(self) -> bool:
        """True from SpeechStarted until TurnEnded (pauses included)."""
        return self._started

    def reset(self) -> None:
        """Forget the current utterance and restart the clock (e.g. a new call leg)."""
        self.vad.reset()
        self._audio = _PcmBuffer()
        self._in_speech = False  # the VAD's hysteresis state for the last frame
        self._run_start: float | None = None  # start of the current run of speech frames
        self._voice_open = False  # VoiceStarted was emitted, its run not yet resolved
        self._reset_turn()

    async def feed(self, pcm: np.ndarray) -> list[TurnEvent]:
        """Process a chunk of caller audio (mono int16 at the VAD's rate); returns events."""
        pcm = np.asarray(pcm)
        if pcm.ndim != 1 or pcm.dtype != np.int16:
            raise BadInput(
                f"TurnDetector takes mono int16 frames, got {pcm.dtype} shape {pcm.shape}"
            )
        async with self._lock:
            self._audio.append(pcm)
            events: list[TurnEvent] = []
            for frame in self.vad.process(pcm):
                await self._on_frame(frame, events)
            self._trim_idle_audio()
            return events

    async def events(self, frames: AsyncIterable[np.ndarray]) -> AsyncIterator[TurnEvent]:
        """Feed every frame of `frames` and yield the events as they happen."""
        async for pcm in frames:
            for event in await self.feed(pcm):
                yield event

    # ------------------------------------------------------------ state machine

    def _reset_turn(self) -> None:
        self._started = False
        self._speech_start = 0.0
        self._speech_end = 0.0  # end of the last speech frame: silence counts from here
        # End of the last frame the VAD was sure of (>= threshold). Silero's score
        # decays over a few frames after the voice stops, so this is the better
        # timestamp; the hysteresis end above stays the cautious one for decisions.
        self._confident_end = 0.0
        self._paused = False
        self._next_check_s: float | None = None
        self._probability: float | None = None

    async def _on_frame(self, frame: VADFrame, events: list[TurnEvent]) -> None:
        opts = self.options
        self._in_speech = self.vad.is_speech(frame.probability, self._in_speech)
        if self._in_speech:
            if self._run_start is None:
                self._run_start = frame.start_s
                if opts.voice_events and not self._started:
                    self._voice_open = True
                    events.append(VoiceStarted(frame.start_s, frame.end_s))
            run_s = frame.end_s - self._run_start
            if not self._started:
                if run_s >= opts.min_speech_s - 1e-9:
                    self._voice_open = False
                    self._started = True
                    self._speech_start = self._run_start
                    self._speech_end = self._confident_end = frame.end_s
                    events.append(SpeechStarted(self._run_start, frame.end_s))
                return
            if self._run_start > self._speech_end and run_s < opts.resume_min_s - 1e-9:
                # Speech after a silence: a frame or two could be a click or a breath;
                # until it lasts, the silence clock keeps running as if it were quiet.
                return
            if self._paused:
                # The caller goes on after a pause: whatever was decided on the pause
                # (a speculative transcription) is stale now.
                self._paused = False
                events.append(SpeechResumed(self._run_start, frame.end_s))
            self._speech_end = frame.end_s
            if frame.probability >= self.vad.threshold:
                self._confident_end = frame.end_s
            self._next_check_s = None
            if frame.end_s - self._speech_start >= opts.max_utterance_s:
                events.append(self._end_turn(frame.end_s, "max_length"))
            return

        run_start, self._run_start = self._run_start, None
        if not self._started:
            if self._voice_open and run_start is not None:
                self._voice_open = False
                events.append(VoiceStopped(run_start, frame.end_s))
            return
        silence_s = frame.end_s - self._speech_end
        if not self._paused and silence_s >= opts.pause_s - 1e-9:
            self._paused = True
            events.append(
                SpeechPaused(
                    self._confident_end,
                    frame.end_s,
                    self._utterance(),
                    opts.output_rate,
                )
            )
        if silence_s >= opts.fallback_s - 1e-9:
            events.append(self._end_turn(frame.end_s, "silence_fallback"))
            return
        if self.smart_turn is None or silence_s < opts.stop_s - 1e-9:
            return
        if self._next_check_s is not None and frame.end_s < self._next_check_s - 1e-9:
            return
        self._next_check_s = frame.end_s + opts.recheck_s
        probability = await self._smart_turn_probability(frame.end_s)
        if probability is None:
            return
        self._probability = probability
        if probability > opts.smart_turn_threshold:
            events.append(self._end_turn(frame.end_s, "smart_turn"))

    async def _smart_turn_probability(self, now_s: float) -> float | None:
        assert self.smart_turn is not None
        # The model hears the turn up to now, trailing silence included, as in training.
        begin = self._index(self._speech_start - self.options.pre_roll_s)
        pcm = self._audio.slice(begin, self._index(now_s))
        try:
            return await self.smart_turn.aprobability(pcm, self.sample_rate)
        except Exception:
            # A broken end-of-turn model must not break the call: silence still ends turns.
            if not self._smart_turn_failed:
                log.exception("Smart Turn failed; ending turns on silence only")
                self._smart_turn_failed = True
            return None

    def _end_turn(self, now_s: float, reason: TurnEndReason) -> TurnEnded:
        event = TurnEnded(
            pcm=self._utterance(),
            sample_rate=self.options.output_rate,
            speech_start_s=self._speech_start,
            speech_end_s=self._confident_end,
            decision_s=now_s,
            reason=reason,
            probability=self._probability,
            decided_monotonic=time.monotonic(),
        )
        self._reset_turn()
        self._run_start = None  # speech going on past max_utterance_s starts a new turn
        self._audio.drop_before(self._index(now_s))
        return event

    # ------------------------------------------------------------ audio

    def _index(self, t_s: float) -> int:
        return max(0, round(t_s * self.sample_rate))

    def _utterance(self) -> np.ndarray:
        begin = self._index(self._speech_start - self.options.pre_roll_s)
        end = self._index(self._speech_end + self.options.post_roll_s)
        pcm = self._audio.slice(begin, end)
        return resample(pcm, self.sample_rate, self.options.output_rate)

    def _trim_idle_audio(self) -> None:
        # Outside a turn only the pre-roll plus a speech run still being confirmed can
        # become part of an utterance; inside one, max_utterance_s bounds the buffer.
        if self._started:
            return
        keep_s = self.options.pre_roll_s + self.options.min_speech_s + 0.1
        if self._run_start is not None:
            keep_from = self._index(self._run_start - self.options.pre_roll_s)
        else:
            keep_from = self._audio.end - self._index(keep_s)
        self._audio.drop_before(keep_from)
