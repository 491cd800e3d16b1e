"""Split a caller recording into utterances at its silences (for `trunkline call`).

Energy-based on 20 ms frames, relative to the recording's own loud frames, so it
works on quiet and loud recordings alike; the caller side needs no model.
"""

from __future__ import annotations

import numpy as np

from serving.audio import decode_audio, resample
from serving.base import BadInput
from telephony.interface import FRAME_SAMPLES, SAMPLE_RATE

MIN_GAP_S = 0.7  # a silence at least this long separates two utterances
MIN_VOICE_S = 0.15  # shorter bursts are clicks, not speech
PAD_S = 0.15  # silence kept around each utterance (soft onsets, trailing decay)


def read_caller_audio(data: bytes) -> np.ndarray:
    """Any audio file soundfile reads -> mono int16 at 8 kHz; BadInput if unreadable."""
    pcm, rate = decode_audio(data)
    if pcm.ndim > 1:
        pcm = pcm.mean(axis=1).astype(np.int16)
    if pcm.size == 0:
        raise BadInput("the audio file holds no samples")
    if rate != SAMPLE_RATE:
        pcm = resample(pcm, rate, SAMPLE_RATE)
    return np.asarray(pcm, dtype=np.int16)


def _frame_rms(pcm: np.ndarray) -> np.ndarray:
    usable = pcm.size - pcm.size % FRAME_SAMPLES
    frames = pcm[:usable].astype(np.float64).reshape(-1, FRAME_SAMPLES)
    return np.sqrt(np.mean(frames**2, axis=1))


def split_utterances(pcm: np.ndarray, min_gap_s: float = MIN_GAP_S) -> list[np.ndarray]:
    """The voiced stretches of `pcm` (8 kHz int16), each padded by PAD_S of its context."""
    rms = _frame_rms(pcm)
    if rms.size == 0:
        return []
    loud = float(np.percentile(rms, 95))
    threshold = max(100.0, 0.1 * loud)  # -20 dB under the loud frames, above line noise
    voiced = rms > threshold
    frame_s = FRAME_SAMPLES / SAMPLE_RATE
    gap_frames = max(1, round(min_gap_s / frame_s))
    spans: list[list[int]] = []
    silent_run = gap_frames
    for index, is_voiced in enumerate(voiced):
        if is_voiced:
            if silent_run >= gap_frames or not spans:
                spans.append([index, index + 1])
            else:
                spans[-1][1] = index + 1
            silent_run = 0
        else:
            silent_run += 1
    pad = round(PAD_S * SAMPLE_RATE)
    out = []
    for first, last in spans:
        if int(voiced[first:last].sum()) * frame_s < MIN_VOICE_S:
            continue
        begin = max(0, first * FRAME_SAMPLES - pad)
        end = min(pcm.size, last * FRAME_SAMPLES + pad)
        out.append(pcm[begin:end])
    return out


def trailing_silence_s(pcm: np.ndarray) -> float:
    """Seconds of quiet at the end of an utterance (its padding), in whole frames."""
    rms = _frame_rms(pcm)
    loud = np.flatnonzero(rms > max(100.0, 0.1 * float(np.max(rms, initial=0.0))))
    if loud.size == 0:
        return 0.0
    return (pcm.size - (int(loud[-1]) + 1) * FRAME_SAMPLES) / SAMPLE_RATE
