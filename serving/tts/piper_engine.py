"""Piper TTS (piper-tts, ONNX on onnxruntime): natural-sounding CPU speech at 22.05 kHz.

Text is split into sentences here (serving/text.py) rather than by Piper, so each
sentence is synthesized in its own worker-thread call and streamed as soon as it is
ready; cancelling the stream abandons the remaining sentences.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
from piper import PiperVoice, SynthesisConfig

from serving.base import AudioChunk, EngineError, UnknownVoice
from serving.text import DEFAULT_MAX_CHARS, sentences_to_speak


class PiperTTS:
    """TTSEngine for one Piper voice model (.onnx with its .onnx.json beside it).

    Voice names: the model's name (file stem, or `voice_name`); for multi-speaker models
    also "<name>:<speaker>" for each speaker in the model's config.
    """

    name = "piper"

    def __init__(
        self,
        model_path: str | Path,
        config_path: str | Path | None = None,
        *,
        voice_name: str | None = None,
        use_cuda: bool = False,
        length_scale: float | None = None,
        max_sentence_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        model_path = Path(model_path)
        config_path = Path(config_path) if config_path else Path(f"{model_path}.json")
        for path in (model_path, config_path):
            if not path.is_file():
                raise EngineError(f"Piper voice file not found: {path}")
        try:
            self._voice = PiperVoice.load(model_path, config_path, use_cuda=use_cuda)
        except (OSError, ValueError, json.JSONDecodeError) as e:
            raise EngineError(f"Piper voice {model_path} could not be loaded: {e}") from e
        self.sample_rate = int(self._voice.config.sample_rate)
        self.default_voice = voice_name or model_path.name.removesuffix(".onnx")
        self._speakers = {
            f"{self.default_voice}:{name}": int(sid)
            for name, sid in (self._voice.config.speaker_id_map or {}).items()
        }
        self._length_scale = length_scale
        self._max_sentence_chars = max_sentence_chars

    def voices(self) -> list[str]:
        return [self.default_voice, *sorted(self._speakers)]

    def synthesize(self, text: str, voice: str | None = None) -> AsyncIterator[AudioChunk]:
        # Validate before the generator starts, so bad requests fail at the call site.
        sentences = sentences_to_speak(text, self._max_sentence_chars)
        config = SynthesisConfig(
            speaker_id=self._speaker_id(voice), length_scale=self._length_scale
        )
        return self._stream(sentences, config)

    def _speaker_id(self, voice: str | None) -> int | None:
        if voice is None or voice == self.default_voice:
            return None
        if voice in self._speakers:
            return self._speakers[voice]
        raise UnknownVoice(f"unknown voice {voice!r}; this Piper engine has {self.voices()}")

    async def _stream(
        self, sentences: list[str], config: SynthesisConfig
    ) -> AsyncIterator[AudioChunk]:
        for sentence in sentences:
            # onnxruntime sessions are thread-safe, so no lock; a cancelled stream stops
            # after the sentence in flight.
            pcm = await asyncio.to_thread(self._synthesize_blocking, sentence, config)
            if pcm.size:
                yield AudioChunk(pcm=pcm, sample_rate=self.sample_rate)

    def _synthesize_blocking(self, sentence: str, config: SynthesisConfig) -> np.ndarray:
        try:
            parts = [c.audio_int16_array for c in self._voice.synthesize(sentence, config)]
        except Exception as e:  # onnxruntime/phonemizer errors: report, don't crash the server
            raise EngineError(f"Piper failed on {sentence[:60]!r}: {e}") from e
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)
