"""G.711 (PCMU / PCMA) codecs at 16 bits, via numpy lookup tables.

Encoding is one table lookup per sample (65536-entry tables indexed by the
16-bit sample), decoding a 256-entry lookup. No `audioop` (gone in 3.13).
"""

from __future__ import annotations

import numpy as np

_ULAW_BIAS = 0x84
_ULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _build_ulaw_encode() -> np.ndarray:
    # The classic 14-bit formulation; rounding (not truncating) to 14 bits is
    # what sox does, and keeps the quantisation error symmetric.
    pcm = np.minimum((np.arange(-32768, 32768, dtype=np.int32) + 2) >> 2, 8191)
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), 8159) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(_ULAW_SEG_END, mag, side="left")
    uval = np.where(seg >= 8, 0x7F, (seg << 4) | ((mag >> (seg + 1)) & 0x0F))
    return ((uval ^ mask) & 0xFF).astype(np.uint8)


def _build_ulaw_decode() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    mag = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return np.where(u & 0x80, -mag, mag).astype(np.int16)


def _build_alaw_encode() -> np.ndarray:
    # A-law works on 13 bits; rounded like the mu-law path
    pcm = np.minimum((np.arange(-32768, 32768, dtype=np.int32) + 4) >> 3, 4095)
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = np.searchsorted(_ALAW_SEG_END, mag, side="left")
    shift = np.where(seg < 2, 1, seg)
    aval = np.where(seg >= 8, 0x7F, (seg << 4) | ((mag >> shift) & 0x0F))
    return ((aval ^ mask) & 0xFF).astype(np.uint8)


def _build_alaw_decode() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return np.where(a & 0x80, t, -t).astype(np.int16)


_ULAW_ENC = _build_ulaw_encode()
_ULAW_DEC = _build_ulaw_decode()
_ALAW_ENC = _build_alaw_encode()
_ALAW_DEC = _build_alaw_decode()


def _as_int16(pcm: bytes | np.ndarray) -> np.ndarray:
    if isinstance(pcm, bytes | bytearray | memoryview):
        if len(pcm) % 2:
            raise ValueError("16-bit PCM must have an even number of bytes")
        return np.frombuffer(pcm, dtype="<i2")
    return np.asarray(pcm, dtype=np.int16)


def ulaw_encode(pcm: bytes | np.ndarray) -> bytes:
    """16-bit signed PCM -> mu-law bytes."""
    return _ULAW_ENC[_as_int16(pcm).astype(np.int32) + 32768].tobytes()


def ulaw_decode(data: bytes) -> np.ndarray:
    """mu-law bytes -> 16-bit signed PCM (int16 array)."""
    return _ULAW_DEC[np.frombuffer(data, dtype=np.uint8)]


def alaw_encode(pcm: bytes | np.ndarray) -> bytes:
    """16-bit signed PCM -> A-law bytes."""
    return _ALAW_ENC[_as_int16(pcm).astype(np.int32) + 32768].tobytes()


def alaw_decode(data: bytes) -> np.ndarray:
    """A-law bytes -> 16-bit signed PCM (int16 array)."""
    return _ALAW_DEC[np.frombuffer(data, dtype=np.uint8)]


# RTP static payload types (RFC 3551) -> (name, encoder, decoder)
PCMU = 0
PCMA = 8
CODECS = {
    PCMU: ("PCMU", ulaw_encode, ulaw_decode),
    PCMA: ("PCMA", alaw_encode, alaw_decode),
}
