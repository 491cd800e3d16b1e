"""Pre-synthesized lines (greeting, holding, apology, silence prompt, goodbyes) per voice.

They are synthesized before the call is answered, with the call's own TTS engine so
they sound like the agent, or with espeak-ng when that engine fails: a line that has
to cover for a broken model must not need that model. Audio is cached per
(engine, voice, text) for the life of the process, so later calls start at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from serving.audio import resample
from serving.base import EngineError, TTSEngine
from telephony.interface import SAMPLE_RATE

log = logging.getLogger(__name__)

_CACHE_MAX = 256
_cache: OrderedDict[tuple[str, str, str], np.ndarray] = OrderedDict()


@dataclass(frozen=True)
class Line:
    text: str
    pcm: np.ndarray  # mono int16 at 8 kHz, ready for Call.write
    engine: str  # which TTS made it


async def synthesize_8k(
    tts: TTSEngine, text: str, voice: str | None, timeout_s: float
) -> np.ndarray:
    """All of `text` spoken by `tts`, as one 8 kHz int16 array."""

    async def run() -> np.ndarray:
        parts: list[np.ndarray] = []
        async for chunk in tts.synthesize(text, voice):
            parts.append(
                resample(np.asarray(chunk.pcm, dtype=np.int16), chunk.sample_rate, SAMPLE_RATE)
            )
        if not parts:
            raise EngineError(f"{tts.name} produced no audio for {text!r}")
        return np.concatenate(parts).astype(np.int16, copy=False)

    return await asyncio.wait_for(run(), timeout_s)


class FallbackLines:
    """Named lines ready to play; `get(name)` never touches a model."""

    def __init__(self, lines: dict[str, Line]) -> None:
        self._lines = lines

    def get(self, name: str) -> Line:
        return self._lines[name]

    def names(self) -> list[str]:
        return sorted(self._lines)

    @classmethod
    async def prepare(
        cls,
        texts: dict[str, str],
        tts: TTSEngine,
        voice: str | None,
        *,
        timeout_s: float = 30.0,
        backup: TTSEngine | None = None,
    ) -> FallbackLines:
        """Synthesize (or take from the cache) every line of `texts` (name -> text)."""
        lines: dict[str, Line] = {}
        for name, text in texts.items():
            lines[name] = await _line(text, tts, voice, timeout_s, backup)
        return cls(lines)


async def _line(
    text: str, tts: TTSEngine, voice: str | None, timeout_s: float, backup: TTSEngine | None
) -> Line:
    # None means the engine's default voice, which differs between engines of one kind.
    key = (tts.name, voice or str(getattr(tts, "default_voice", "")), text)
    if key in _cache:
        _cache.move_to_end(key)
        return Line(text, _cache[key], tts.name)
    try:
        pcm = await synthesize_8k(tts, text, voice, timeout_s)
    except (EngineError, TimeoutError, OSError) as exc:
        log.warning("%s could not pre-synthesize %r (%s); using espeak-ng", tts.name, text, exc)
        engine = backup or _espeak()
        # Not cached: the primary engine may recover for the next call.
        return Line(text, await synthesize_8k(engine, text, None, timeout_s), engine.name)
    _cache[key] = pcm
    while len(_cache) > _CACHE_MAX:
        _cache.popitem(last=False)
    return Line(text, pcm, tts.name)


def _espeak() -> TTSEngine:
    from serving.tts.espeak_engine import EspeakTTS  # only needed when the main TTS fails

    return EspeakTTS()
