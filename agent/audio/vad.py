"""Silero VAD (v5/v6 ONNX) run with onnxruntime and numpy: speech probability per 32 ms.

The silero_vad package is never imported (it pulls torch); only its ONNX file is used,
located by `models.resolve("silero-vad")`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import onnxruntime as ort

from serving.base import BadInput, EngineError

# The model scores 32 ms frames and, since v5, wants the last samples of the previous
# frame prepended as context; without it the probabilities are noticeably worse.
FRAME_SAMPLES = {16000: 512, 8000: 256}
CONTEXT_SAMPLES = {16000: 64, 8000: 32}
_STATE_SHAPE = (2, 1, 128)
# Long non-speech (silence, line noise, hold music) drifts the recurrent state so
# that the next speech scores lower (measured: 90% -> 81% of speech frames after a
# minute of digital silence at 8 kHz). Refreshing the state during clear non-speech
# costs nothing and keeps the first words of the next turn detectable.
_QUIET_PROBABILITY = 0.1


@dataclass(frozen=True)
class VADFrame:
    """One scored frame; times are seconds of audio fed since the last reset."""

    start_s: float
    end_s: float
    probability: float


@cache
def _session(model_path: str) -> ort.InferenceSession:
    # One session per model file, shared by every call: run() is thread-safe and the
    # recurrent state lives in each SileroVAD, so a call costs no model load.
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # 0.2-0.4 ms per frame: threads only add overhead
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(
            model_path, sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as e:
        raise EngineError(f"silero VAD model {model_path} could not be loaded: {e}") from e


class SileroVAD:
    """Streaming Silero VAD for one audio stream (one call); not shared between streams.

    `process()` takes PCM chunks of any length (e.g. 20 ms telephony frames), buffers
    them to the model's 32 ms frame, and returns one VADFrame per complete frame.
    """

    def __init__(
        self,
        model_path: str | Path,
        sample_rate: int = 16000,
        threshold: float = 0.5,
        negative_threshold: float | None = None,
        quiet_reset_s: float | None = 2.0,
    ) -> None:
        """`quiet_reset_s`: refresh the model state after this much clear non-speech
        (None: never)."""
        if sample_rate not in FRAME_SAMPLES:
            raise BadInput(f"silero VAD runs at 8000 or 16000 Hz, not {sample_rate!r}")
        if not 0.0 < threshold < 1.0:
            raise BadInput(f"VAD threshold must be in (0, 1), got {threshold!r}")
        path = Path(model_path)
        if not path.is_file():
            raise EngineError(f"silero VAD model file not found: {path}")
        self.sample_rate = sample_rate
        self.frame_samples = FRAME_SAMPLES[sample_rate]
        self.frame_s = self.frame_samples / sample_rate
        self.threshold = threshold
        # Hysteresis as silero recommends: speech starts above `threshold` and only
        # stops below a lower one, so a dip mid-word does not split the speech.
        self.negative_threshold = (
            max(threshold - 0.15, 0.01) if negative_threshold is None else negative_threshold
        )
        self._session = _session(str(path))
        self._sr = np.array(sample_rate, dtype=np.int64)
        self._quiet_reset_frames = (
            None if quiet_reset_s is None else max(1, round(quiet_reset_s / self.frame_s))
        )
        self._lock = threading.Lock()  # the state is per stream; guard against misuse
        self.reset()

    def reset(self) -> None:
        """Forget all audio: recurrent state, context, partial frame and the clock."""
        self._reset_model_state()
        self._pending = np.zeros(0, dtype=np.float32)
        self._frames_done = 0

    def _reset_model_state(self) -> None:
        self._state = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES[self.sample_rate], dtype=np.float32)
        self._quiet_frames = 0

    def is_speech(self, probability: float, speaking: bool) -> bool:
        """Speech decision for one frame, given whether the previous frame was speech."""
        return probability >= (self.negative_threshold if speaking else self.threshold)

    def process(self, pcm: np.ndarray) -> list[VADFrame]:
        """Score `pcm` (mono int16, or float32 in [-1, 1]); returns the frames completed."""
        samples = _as_float32(pcm)
        with self._lock:
            if self._pending.size:
                samples = np.concatenate([self._pending, samples])
            n_frames = samples.size // self.frame_samples
            used = n_frames * self.frame_samples
            self._pending = samples[used:].copy()
            frames = []
            for i in range(n_frames):
                frame = samples[i * self.frame_samples : (i + 1) * self.frame_samples]
                probability = self._score(frame)
                start = self._frames_done * self.frame_s
                frames.append(VADFrame(start, start + self.frame_s, probability))
                self._frames_done += 1
            return frames

    def _score(self, frame: np.ndarray) -> float:
        model_input = np.concatenate([self._context, frame])[None, :]
        probability, self._state = self._session.run(
            None, {"input": model_input, "state": self._state, "sr": self._sr}
        )
        self._context = frame[-self._context.size :]
        score = float(probability[0, 0])
        self._quiet_frames = self._quiet_frames + 1 if score < _QUIET_PROBABILITY else 0
        if self._quiet_reset_frames and self._quiet_frames >= self._quiet_reset_frames:
            self._reset_model_state()
        return score


def _as_float32(pcm: np.ndarray) -> np.ndarray:
    pcm = np.asarray(pcm)
    if pcm.ndim != 1:
        raise BadInput(f"VAD takes mono 1-D audio, got shape {pcm.shape}")
    if pcm.dtype == np.int16:
        return pcm.astype(np.float32) / 32768.0
    if np.issubdtype(pcm.dtype, np.floating):
        if pcm.size and not np.isfinite(pcm).all():
            raise BadInput("VAD audio contains NaN or infinite samples")
        return pcm.astype(np.float32)
    raise BadInput(f"VAD audio must be int16 or float samples, got {pcm.dtype}")
