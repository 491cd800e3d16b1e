"""Helpers that judge audio the way a listener would: frequency and level."""

from __future__ import annotations

import numpy as np


def tone(freq: float, seconds: float, level_dbfs: float = -12.0, rate: int = 8000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    amplitude = 32767 * 10 ** (level_dbfs / 20)
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def dominant_frequency(pcm: np.ndarray, rate: int = 8000) -> float:
    x = pcm.astype(np.float64)
    x = x - x.mean()
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spectrum))])


def level_dbfs(pcm: np.ndarray) -> float:
    rms = np.sqrt(np.mean(pcm.astype(np.float64) ** 2))
    return float(20 * np.log10(max(rms, 1e-9) / 32767))


def snr_db(reference: np.ndarray, decoded: np.ndarray) -> float:
    ref = reference.astype(np.float64)
    noise = decoded.astype(np.float64) - ref
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum(noise**2), 1e-9)))


def voiced(pcm: np.ndarray, threshold_dbfs: float = -40.0, frame: int = 160) -> np.ndarray:
    """The frames louder than the threshold, concatenated (drops leading/trailing silence)."""
    usable = len(pcm) // frame * frame
    frames = pcm[:usable].reshape(-1, frame)
    keep = [f for f in frames if level_dbfs(f) > threshold_dbfs]
    return np.concatenate(keep) if keep else np.zeros(0, dtype=np.int16)
