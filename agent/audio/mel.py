"""Whisper-style log-mel features in numpy (what Smart Turn v3 was trained on).

80 Slaney mel bands over a 400-point periodic-Hann STFT with a 160-sample hop at
16 kHz, log10, clamped to 8 decades below the peak and scaled to roughly [-1, 1].
Written here instead of importing faster-whisper so the agent process needs only
numpy for end-of-turn detection; tests check it against faster-whisper's extractor.
"""

from __future__ import annotations

from functools import cache

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
N_MELS = 80


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    # Slaney scale: linear below 1 kHz, logarithmic above (as librosa and Whisper use).
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3.0)
    log = 15.0 + np.log(np.maximum(hz, 1e-12) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * (200.0 / 3.0)
    log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log, linear)


@cache
def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Triangular, area-normalised (Slaney) filters, shape [n_mels, n_fft // 2 + 1]."""
    bin_hz = np.fft.rfftfreq(n_fft, d=1.0 / rate)
    edges_hz = _mel_to_hz(np.linspace(0.0, _hz_to_mel(np.array(rate / 2.0)), n_mels + 2))
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bin_hz[None, :] - lower) / (centre - lower)
    falling = (upper - bin_hz[None, :]) / (upper - centre)
    filters = np.maximum(0.0, np.minimum(rising, falling))
    filters *= 2.0 / (upper - lower)  # equal area per band
    filters.flags.writeable = False
    return filters


@cache
def _bands() -> tuple[tuple[int, int, np.ndarray], ...]:
    # Each filter is non-zero on at most ~15 FFT bins. Applying them band by band is
    # exact and avoids one big matmul, which multi-threaded OpenBLAS turns from ~1 ms
    # into 20-30 ms on a busy 2-core machine.
    out = []
    for row in mel_filterbank():
        nonzero = np.flatnonzero(row)
        lo, hi = int(nonzero[0]), int(nonzero[-1]) + 1
        out.append((lo, hi, row[lo:hi]))
    return tuple(out)


@cache
def _hann(n_fft: int) -> np.ndarray:
    window = np.hanning(n_fft + 1)[:-1]  # periodic, like torch.hann_window
    window.flags.writeable = False
    return window


def log_mel(audio: np.ndarray) -> np.ndarray:
    """Log-mel of 16 kHz float audio: [80, len(audio) // 160] float32.

    The STFT is centred (reflect padding of n_fft // 2 on both sides), as in Whisper.
    """
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim != 1 or x.size <= N_FFT // 2:
        raise ValueError(f"log_mel needs 1-D audio longer than {N_FFT // 2} samples")
    padded = np.pad(x, N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * _hann(N_FFT), axis=-1)) ** 2  # [frames, bins]
    power = power[:-1]  # Whisper drops the last frame: exactly 100 frames per second
    mel = np.empty((N_MELS, power.shape[0]))
    for band, (lo, hi, weights) in enumerate(_bands()):
        mel[band] = power[:, lo:hi] @ weights
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)
