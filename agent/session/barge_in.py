"""Barge-in policy: what counts as an interruption, and what the caller heard.

Decision (documented in the session docstring too):
1. The caller's first voiced frame (VoiceStarted, ~30-60 ms into the voice) pauses the
   agent's audio at once: the queued audio is taken off the wire and kept. A late stop
   is what callers notice most, and waiting for min_speech_s would cost 0.3 s.
   Sounds shorter than TurnOptions.min_speech_s end with VoiceStopped: the audio
   resumes where it stopped (a gap of a few hundred ms) and nothing is cut or lost.
2. SpeechStarted (the voice lasted min_speech_s) while the agent is speaking confirms
   the barge-in: the held audio is dropped and the LLM and TTS work is cancelled, as
   a person stops talking when interrupted.
3. Once the interrupting utterance is transcribed, a short all-backchannel phrase
   ("mm-hm", "okay", "got it") is not a turn: the agent resumes the interrupted reply
   from the start of the sentence that was cut. Anything else is a new turn.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_WORD = re.compile(r"[a-z]+(?:[-'][a-z]+)*")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def is_backchannel(text: str, backchannels: Iterable[str], max_words: int) -> bool:
    """True for a short phrase made only of listening noises ("mm-hm", "okay, yeah")."""
    said = words(text)
    if not said or len(said) > max_words:
        return False
    vocabulary = set(backchannels)
    return all(w in vocabulary for w in said) or " ".join(said) in vocabulary


@dataclass
class SpokenSegment:
    """One sentence of agent speech and where its audio sits in the outgoing stream."""

    text: str
    start: int  # sample offset (8 kHz) of its first sample
    end: int  # one past its last sample written so far
    complete: bool = False  # all of its audio has been written


def heard_text(segments: Sequence[SpokenSegment], heard_until: int) -> tuple[str, int]:
    """What the caller heard of `segments` when playback stopped at sample `heard_until`.

    Whole sentences played in full are kept; the sentence being played is cut to the
    words whose share of its audio was played (speech rate is near enough constant
    within a sentence). Returns the text and the index of the first segment not heard
    in full (len(segments) if all were).
    """
    parts: list[str] = []
    for index, seg in enumerate(segments):
        if seg.complete and seg.end <= heard_until:
            parts.append(seg.text)
            continue
        if seg.start < heard_until and seg.end > seg.start:
            fraction = min(1.0, (heard_until - seg.start) / (seg.end - seg.start))
            partial = _cut_at_word(seg.text, fraction)
            if partial:
                parts.append(partial)
        return " ".join(parts), index
    return " ".join(parts), len(segments)


def _cut_at_word(text: str, fraction: float) -> str:
    """The words of `text` that fit in the first `fraction` of it (whole words only)."""
    limit = int(len(text) * fraction)
    if limit >= len(text):
        return text
    cut = text[:limit]
    if limit < len(text) and not text[limit].isspace():
        cut = cut.rsplit(None, 1)[0] if " " in cut.strip() else ""
    return cut.strip()


# A pause at the caller's first voice lasts until the voice is confirmed as speech
# (TurnOptions.min_speech_s) or ends as a blip; this bounds it if neither comes.
PAUSE_MAX_S = 1.0
