"""Audio helpers shared by the engines and the HTTP routes: decode, convert, resample, encode.

PCM inside the stack is mono int16 numpy arrays plus an explicit sample rate.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf
import soxr

from serving.base import BadInput

# An upload longer than this is refused: a turn or a voice sample is seconds long, and
# decoding hours of audio would only tie up memory and a worker.
MAX_AUDIO_S = 600.0
# Lowest and highest sample rates we accept; outside this it is not speech audio.
MIN_RATE = 4000
MAX_RATE = 192_000

# Streaming writers (espeak-ng --stdout, ffmpeg pipes) put a placeholder near 2**31
# (or 0) in the RIFF/data size fields because they cannot seek back.
_WAV_PLACEHOLDER_MIN = 0x7FFF0000


def check_rate(rate: int) -> None:
    if not isinstance(rate, int | np.integer) or not MIN_RATE <= rate <= MAX_RATE:
        raise BadInput(
            f"sample rate must be an integer in [{MIN_RATE}, {MAX_RATE}] Hz, got {rate!r}"
        )


def to_float32(pcm: np.ndarray) -> np.ndarray:
    """int16 -> float32 in [-1, 1); float input is passed through as float32."""
    if pcm.dtype == np.int16:
        return pcm.astype(np.float32) / 32768.0
    if np.issubdtype(pcm.dtype, np.floating):
        return pcm.astype(np.float32, copy=False)
    raise BadInput(f"audio samples must be int16 or float, got {pcm.dtype}")


def to_int16(pcm: np.ndarray) -> np.ndarray:
    """float in [-1, 1] -> int16 (clipped); int16 is passed through."""
    if pcm.dtype == np.int16:
        return pcm
    if np.issubdtype(pcm.dtype, np.floating):
        # The exact inverse of to_float32, so int16 -> float -> int16 is lossless.
        return np.clip(np.round(pcm * 32768.0), -32768, 32767).astype(np.int16)
    raise BadInput(f"audio samples must be int16 or float, got {pcm.dtype}")


def resample(pcm: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample mono audio with soxr; the dtype (int16 or float32) is kept."""
    check_rate(from_rate)
    check_rate(to_rate)
    if from_rate == to_rate or pcm.size == 0:
        return pcm
    if pcm.dtype != np.int16:
        pcm = to_float32(pcm)
    return soxr.resample(pcm, from_rate, to_rate, quality="HQ")


def encode_wav(pcm: np.ndarray, rate: int) -> bytes:
    """Mono 16-bit PCM WAV bytes."""
    check_rate(rate)
    buf = io.BytesIO()
    sf.write(buf, to_int16(np.asarray(pcm)), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def decode_audio(data: bytes, *, max_s: float = MAX_AUDIO_S) -> tuple[np.ndarray, int]:
    """Decode an uploaded file (WAV, FLAC, OGG, MP3, ...) to mono int16 and its rate.

    Raises BadInput, saying what is wrong, for empty, unrecognised, corrupt, truncated,
    zero-length or over-long audio.
    """
    if not data:
        raise BadInput("audio is empty (0 bytes)")
    try:
        info = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise BadInput(f"audio could not be decoded: {_libsndfile_reason(e)}") from None
    check_rate(info.samplerate)
    if info.format in ("WAV", "WAVEX"):
        _check_wav_complete(data)
    if info.frames > max_s * info.samplerate * 1.1:
        raise BadInput(
            f"audio is too long: {info.frames / info.samplerate:.0f} s (max {max_s:.0f} s)"
        )
    try:
        pcm, rate = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise BadInput(f"audio is corrupt or truncated: {_libsndfile_reason(e)}") from None
    frames = pcm.shape[0]
    if frames == 0:
        raise BadInput("audio has no samples (zero length, or truncated before any audio)")
    # Compressed streams that stop early decode "successfully" with fewer frames than
    # the header announced; MP3 frame counts are estimates, hence the tolerance.
    if info.format not in ("WAV", "WAVEX") and info.frames > 0 and frames < 0.9 * info.frames:
        raise BadInput(
            f"audio is truncated: decoded {frames} of {info.frames} frames announced by the header"
        )
    if frames > max_s * rate:
        raise BadInput(f"audio is too long: {frames / rate:.0f} s (max {max_s:.0f} s)")
    if pcm.shape[1] == 1:
        return pcm[:, 0].copy(), int(rate)
    return np.round(pcm.mean(axis=1)).astype(np.int16), int(rate)


def _check_wav_complete(data: bytes) -> None:
    """libsndfile reads a cut-off WAV without complaint; compare the data chunk's
    declared size with the bytes actually present."""
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = struct.unpack_from("<4sI", data, pos)
        if chunk_id == b"data":
            if size == 0 or size >= _WAV_PLACEHOLDER_MIN:
                return  # written by a streaming tool: size unknown
            present = len(data) - (pos + 8)
            if present < size:
                raise BadInput(
                    f"WAV file is truncated: data chunk declares {size} bytes, {present} present"
                )
            return
        pos += 8 + size + (size & 1)
    raise BadInput("WAV file has no data chunk")


def _libsndfile_reason(e: Exception) -> str:
    # libsndfile messages start with "Error opening <_io.BytesIO object at 0x..>: "; the
    # object repr means nothing to a user.
    msg = str(e)
    if ">: " in msg:
        msg = msg.split(">: ", 1)[1]
    return msg.strip() or type(e).__name__
