"""Whisper STT on CTranslate2 (the faster-whisper model format), sized for phone turns.

Whisper's encoder normally runs on a fixed 30 s window, and for a 2-3 s caller turn that
fixed cost dominates. CTranslate2 accepts shorter mel inputs, so each utterance is
encoded in a window just long enough for it (see research/models-on-cpu.md): utterance
+ 2 s, rounded up to 5 s, at least 10 s (shorter windows lose words or loop), at most
30 s (the model's positional range). Longer audio is cut into 30 s windows at quiet
points. Decoding is greedy, English, without timestamps, with a token cap
proportional to the audio so a confused decoder cannot loop for long.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import ctranslate2
import numpy as np
import tokenizers
from faster_whisper.feature_extractor import FeatureExtractor
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens

from serving.audio import MAX_AUDIO_S, check_rate, resample, to_float32
from serving.base import BadInput, EngineError, Segment, Transcript

SAMPLE_RATE = 16_000
_HOP = 160  # mel frame hop: 100 frames per second
_MODEL_MAX_TOKENS = 448  # Whisper decoder's positional limit (prompt included)


@dataclass(frozen=True)
class WindowPolicy:
    """How large an encoder window each piece of audio gets."""

    pad_s: float = 2.0
    round_s: float = 5.0
    min_s: float = 10.0
    max_s: float = 30.0

    def window_for(self, audio_s: float) -> float:
        window = math.ceil((audio_s + self.pad_s) / self.round_s) * self.round_s
        return float(min(self.max_s, max(self.min_s, window)))

    @property
    def max_piece_s(self) -> float:
        """Longest piece of audio one window takes (leaving the pad as trailing silence)."""
        return max(self.max_s - self.pad_s, 1.0)


class FasterWhisperSTT:
    """STTEngine for a CTranslate2 Whisper model directory (model.bin, tokenizer.json, ...)."""

    name = "faster-whisper"

    def __init__(
        self,
        model_dir: str | Path,
        device: str = "cpu",
        compute_type: str | None = None,
        *,
        cpu_threads: int = 0,
        language: str = "en",
        window: WindowPolicy | None = None,
        tokens_per_s: float = 8.0,
        no_speech_threshold: float = 0.6,
        max_audio_s: float = MAX_AUDIO_S,
    ) -> None:
        model_dir = Path(model_dir)
        for needed in ("model.bin", "tokenizer.json"):
            if not (model_dir / needed).is_file():
                raise EngineError(f"Whisper model directory {model_dir} has no {needed}")
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        # int8 is the fast CPU path; float16 is what GPUs run best.
        compute_type = compute_type or ("float16" if device == "cuda" else "int8")
        self.model_dir = model_dir
        self.device = device
        self.compute_type = compute_type
        self.window = window or WindowPolicy()
        self.tokens_per_s = tokens_per_s
        self.no_speech_threshold = no_speech_threshold
        self.max_audio_s = max_audio_s

        self._model = ctranslate2.models.Whisper(
            str(model_dir), device=device, compute_type=compute_type, intra_threads=cpu_threads
        )
        multilingual = self._model.is_multilingual
        if not multilingual and language != "en":
            raise ValueError(
                f"{model_dir.name} is English-only; language={language!r} is not possible"
            )
        self._tokenizer = Tokenizer(
            tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json")),
            multilingual,
            task="transcribe",
            language=language if multilingual else None,
        )
        self.language = language
        self._prompt = [*self._tokenizer.sot_sequence, self._tokenizer.no_timestamps]
        self._suppress = list(get_suppressed_tokens(self._tokenizer, [-1]))
        self._features = FeatureExtractor(feature_size=self._model.n_mels)
        # A CTranslate2 model may run concurrent calls, but on a small CPU box they only
        # fight over the same cores; one at a time keeps each turn's latency predictable.
        self._lock = threading.Lock()

    async def transcribe(self, pcm: np.ndarray, sample_rate: int) -> Transcript:
        audio = self._validate(pcm, sample_rate)
        # The model call blocks for hundreds of ms: keep it off the event loop.
        return await asyncio.to_thread(self._transcribe_blocking, audio, sample_rate)

    def transcribe_sync(self, pcm: np.ndarray, sample_rate: int) -> Transcript:
        """Blocking variant for scripts and benchmarks."""
        return self._transcribe_blocking(self._validate(pcm, sample_rate), sample_rate)

    def _validate(self, pcm: np.ndarray, sample_rate: int) -> np.ndarray:
        if not isinstance(pcm, np.ndarray):
            raise BadInput("audio must be a numpy array of samples")
        if pcm.ndim == 2 and 1 in pcm.shape:
            pcm = pcm.reshape(-1)
        if pcm.ndim != 1:
            raise BadInput(f"audio must be mono (1-D), got shape {pcm.shape}")
        check_rate(sample_rate)
        if pcm.size == 0:
            raise BadInput("audio is empty (0 samples)")
        if pcm.size > self.max_audio_s * sample_rate:
            raise BadInput(
                f"audio is too long: {pcm.size / sample_rate:.0f} s (max {self.max_audio_s:.0f} s)"
            )
        audio = to_float32(pcm)
        if not np.isfinite(audio).all():
            raise BadInput("audio contains NaN or infinite samples")
        return audio

    def _transcribe_blocking(self, audio: np.ndarray, sample_rate: int) -> Transcript:
        t0 = time.perf_counter()
        audio = resample(audio, sample_rate, SAMPLE_RATE)
        timings = {
            "resample": time.perf_counter() - t0,
            "features": 0.0,
            "encode": 0.0,
            "decode": 0.0,
        }
        segments: list[Segment] = []
        with self._lock:
            timings["lock_wait"] = time.perf_counter() - t0 - timings["resample"]
            for start, end in _split_points(audio, self.window.max_piece_s):
                segment = self._run_window(audio[start:end], start / SAMPLE_RATE, timings)
                if segment is not None:
                    segments.append(segment)
        timings["total"] = time.perf_counter() - t0
        return Transcript(
            text=" ".join(s.text for s in segments).strip(),
            segments=tuple(segments),
            language=self.language,
            audio_s=len(audio) / SAMPLE_RATE,
            timings=timings,
        )

    def _run_window(
        self, piece: np.ndarray, offset_s: float, timings: dict[str, float]
    ) -> Segment | None:
        piece_s = len(piece) / SAMPLE_RATE
        window_samples = int(self.window.window_for(piece_s) * SAMPLE_RATE)
        t = time.perf_counter()
        padded = np.zeros(window_samples, dtype=np.float32)
        padded[: len(piece)] = piece[:window_samples]
        # padding=0: the window is already padded; the extractor then yields exactly
        # window_samples / hop frames.
        mel = self._features(padded, padding=0)[:, : window_samples // _HOP]
        features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None], np.float32))
        timings["features"] += time.perf_counter() - t

        t = time.perf_counter()
        encoded = self._model.encode(features, to_cpu=False)
        timings["encode"] += time.perf_counter() - t

        t = time.perf_counter()
        max_new = max(8, math.ceil(self.tokens_per_s * piece_s))
        max_length = min(_MODEL_MAX_TOKENS, len(self._prompt) + max_new)
        result = self._model.generate(
            encoded,
            [self._prompt],
            beam_size=1,
            max_length=max_length,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress,
        )[0]
        timings["decode"] += time.perf_counter() - t

        no_speech = float(result.no_speech_prob)
        # On silence Whisper still "hears" something ("you"); its no-speech head knows better.
        if no_speech > self.no_speech_threshold:
            return None
        text = self._tokenizer.decode(result.sequences_ids[0]).strip()
        if not text:
            return None
        return Segment(
            start_s=round(offset_s, 3),
            end_s=round(offset_s + piece_s, 3),
            text=text,
            no_speech_prob=no_speech,
        )


def _split_points(audio: np.ndarray, max_piece_s: float) -> list[tuple[int, int]]:
    """Cut audio into pieces of at most max_piece_s, each cut at the quietest 100 ms in
    the last 5 s before the limit, so that words are rarely split between windows."""
    limit = int(max_piece_s * SAMPLE_RATE)
    frame = SAMPLE_RATE // 10
    pieces: list[tuple[int, int]] = []
    start = 0
    while len(audio) - start > limit:
        search_from = start + max(limit - 5 * SAMPLE_RATE, frame)
        region = audio[search_from : start + limit]
        n = len(region) // frame
        energy = (region[: n * frame].reshape(n, frame) ** 2).mean(axis=1)
        cut = search_from + int(np.argmin(energy)) * frame + frame // 2
        pieces.append((start, cut))
        start = cut
    pieces.append((start, len(audio)))
    return pieces
