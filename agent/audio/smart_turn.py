"""Smart Turn v3.2 (ONNX): does the caller's audio so far sound like a finished turn?

The model hears the last 8 s of 16 kHz audio as Whisper log-mel features and returns
the probability that the speaker has finished (> 0.5 = complete). It judges prosody
and wording together, so "I need help with my" scores low even after a silence.
Weights: `models.resolve("smart-turn-v3.2")` (shipped in the pipecat-ai wheel, BSD-2).
"""

from __future__ import annotations

import asyncio
import platform
import re
from functools import cache
from pathlib import Path

import numpy as np
import onnxruntime as ort

from agent.audio.mel import HOP, SAMPLE_RATE, log_mel
from serving.audio import resample, to_float32
from serving.base import BadInput, EngineError

WINDOW_S = 8
WINDOW_SAMPLES = WINDOW_S * SAMPLE_RATE
N_FRAMES = WINDOW_SAMPLES // HOP  # 800


# The ONNX Runtime pass that turns the model's quantize/dequantize pairs into integer ops.
_INT8_FUSION = "QDQSelectorActionTransformer"


def int8_ops_saturate(cpuinfo: str | None = None) -> bool:
    """True on x86 CPUs without VNNI, where ONNX Runtime's fused int8 kernels multiply
    u8 x s8 in 16-bit lanes that saturate. Measured on an AMD EPYC (Zen 3, AVX2 only):
    fused, "I need help with my" scored 0.59 (a finished turn); unfused 0.02, as the
    float model says. Unknown x86 CPUs count as saturating: slower, never wrong."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False  # ARM's int8 dot products do not saturate
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return True
    return re.search(r"\b(?:avx512_vnni|avx_vnni)\b", cpuinfo) is None


@cache
def _session(model_path: str) -> ort.InferenceSession:
    # Shared by all calls: onnxruntime's run() is thread-safe and the model is stateless.
    options = ort.SessionOptions()
    # One thread: on a small box the agent's calls run side by side, and a second
    # thread per inference would only fight them (and the STT/LLM) for the cores.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(
            model_path,
            sess_options=options,
            providers=["CPUExecutionProvider"],
            # Dequantized float ops instead (118 ms vs 68 ms per 8 s window there).
            disabled_optimizers=[_INT8_FUSION] if int8_ops_saturate() else None,
        )
    except Exception as e:
        raise EngineError(f"Smart Turn model {model_path} could not be loaded: {e}") from e


def features(audio_16k: np.ndarray) -> np.ndarray:
    """Model input [1, 80, 800] for the last 8 s of 16 kHz float audio.

    Shorter audio is zero-padded at the start (the model expects the turn's end at
    the end of the window); the waveform is normalised to zero mean and unit variance
    before the mel, as in training.
    """
    x = np.asarray(audio_16k, dtype=np.float32)[-WINDOW_SAMPLES:]
    if x.size < WINDOW_SAMPLES:
        x = np.concatenate([np.zeros(WINDOW_SAMPLES - x.size, dtype=np.float32), x])
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    return log_mel(x)[None, :, :N_FRAMES]


class SmartTurn:
    """End-of-turn classifier; safe to share between calls and threads."""

    def __init__(self, model_path: str | Path, threshold: float = 0.5) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise EngineError(f"Smart Turn model file not found: {path}")
        self.threshold = threshold
        self._session = _session(str(path))

    def probability(self, pcm: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
        """P(turn complete) for mono int16/float audio ending now. Blocks ~10-120 ms."""
        pcm = np.asarray(pcm)
        if pcm.ndim != 1 or pcm.size == 0:
            raise BadInput(f"Smart Turn takes non-empty mono 1-D audio, got shape {pcm.shape}")
        # Only the last 8 s matter: cut before resampling so a long turn costs the same.
        tail = pcm[-int(np.ceil(WINDOW_S * sample_rate)) - 64 :]
        audio = to_float32(resample(tail, sample_rate, SAMPLE_RATE))
        if not np.isfinite(audio).all():
            raise BadInput("Smart Turn audio contains NaN or infinite samples")
        (scores,) = self._session.run(None, {"input_features": features(audio)})
        return float(scores.reshape(-1)[0])

    def is_complete(self, probability: float) -> bool:
        return probability > self.threshold

    async def aprobability(self, pcm: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
        """`probability` in a worker thread, so the event loop never waits on the model."""
        return await asyncio.to_thread(self.probability, pcm, sample_rate)
