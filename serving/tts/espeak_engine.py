"""espeak-ng TTS: robotic but always there (Debian package, no model files), the fallback
voice when Piper or a GPU engine is unavailable.

One espeak-ng process per sentence, fed through stdin (text never becomes a
command-line argument), read from --stdout. Cancelling the stream kills the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import struct
import subprocess
from collections.abc import AsyncIterator

import numpy as np

from serving.base import AudioChunk, EngineError, UnknownVoice
from serving.text import DEFAULT_MAX_CHARS, sentences_to_speak

_WAV_HEADER_BYTES = 44  # espeak-ng always writes a plain 44-byte PCM header


class EspeakTTS:
    """TTSEngine on the espeak-ng binary. Voices are espeak language codes ("en-us"),
    optionally with a variant ("en-us+f3")."""

    name = "espeak"

    def __init__(
        self,
        voice: str = "en-us",
        *,
        binary: str = "espeak-ng",
        words_per_minute: int = 165,
        timeout_s: float = 30.0,
        max_sentence_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        path = shutil.which(binary)
        if path is None:
            raise EngineError(f"{binary} not found on PATH (Debian package espeak-ng)")
        self._binary = path
        self._languages = self._list(None)
        self._variants = set(self._list("variant"))
        self.default_voice = voice
        self._check_voice(voice)
        self._wpm = words_per_minute
        self._timeout_s = timeout_s
        self._max_sentence_chars = max_sentence_chars

    def _list(self, kind: str | None) -> list[str]:
        arg = "--voices" if kind is None else f"--voices={kind}"
        try:
            out = subprocess.run(
                [self._binary, arg], capture_output=True, text=True, timeout=10, check=True
            ).stdout
        except (OSError, subprocess.SubprocessError) as e:
            raise EngineError(f"espeak-ng could not list voices: {e}") from e
        names = []
        for line in out.splitlines()[1:]:  # first line is the column header
            cols = line.split()
            if len(cols) >= 5:
                # Languages are named by their code; variants by their file (!v/<name>).
                names.append(cols[4].removeprefix("!v/") if kind == "variant" else cols[1])
        return names

    def voices(self) -> list[str]:
        return list(self._languages)

    def _check_voice(self, voice: str) -> None:
        language, _, variant = voice.partition("+")
        if language not in self._languages or (variant and variant not in self._variants):
            raise UnknownVoice(
                f"unknown espeak voice {voice!r}: use a language code from voices() "
                "(e.g. 'en-us'), optionally with '+<variant>'"
            )

    def synthesize(self, text: str, voice: str | None = None) -> AsyncIterator[AudioChunk]:
        sentences = sentences_to_speak(text, self._max_sentence_chars)
        voice = voice or self.default_voice
        self._check_voice(voice)
        return self._stream(sentences, voice)

    async def _stream(self, sentences: list[str], voice: str) -> AsyncIterator[AudioChunk]:
        for sentence in sentences:
            pcm, rate = await self._run(sentence, voice)
            if pcm.size:
                yield AudioChunk(pcm=pcm, sample_rate=rate)

    async def _run(self, sentence: str, voice: str) -> tuple[np.ndarray, int]:
        proc = await asyncio.create_subprocess_exec(
            self._binary,
            "--stdin",
            "--stdout",
            "-v",
            voice,
            "-s",
            str(self._wpm),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(self._timeout_s):
                out, err = await proc.communicate(sentence.encode())
        except TimeoutError:
            raise EngineError(f"espeak-ng took longer than {self._timeout_s} s") from None
        finally:
            # Reached on cancellation too: never leave an orphaned synthesizer running.
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if proc.returncode != 0 or len(out) < _WAV_HEADER_BYTES:
            raise EngineError(
                f"espeak-ng failed ({proc.returncode}): {err.decode(errors='replace')[:200]}"
            )
        # --stdout cannot seek back to fill in the RIFF sizes (they are placeholders), so
        # the PCM is simply everything after the fixed header; the rate field is real.
        (rate,) = struct.unpack_from("<I", out, 24)
        body = out[_WAV_HEADER_BYTES:]
        pcm = np.frombuffer(body[: len(body) // 2 * 2], dtype="<i2").astype(np.int16)
        return pcm, int(rate)
