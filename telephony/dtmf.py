"""DTMF: RFC 4733 telephone-event payloads in and out, and in-band tones."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

EVENT_DIGITS = "0123456789*#ABCD"
_EVENT = struct.Struct("!BBH")

# (low, high) frequencies in Hz of each key
DTMF_FREQUENCIES: dict[str, tuple[int, int]] = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
    "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
    "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
    "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633),
}  # fmt: skip


class DtmfError(ValueError):
    """Not a telephone-event payload, or a digit we cannot send."""


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    digit: str
    end: bool
    volume: int  # -dBm0, 0..63
    duration: int  # in timestamp units (samples at 8 kHz)

    def build(self) -> bytes:
        code = EVENT_DIGITS.index(self.digit)
        flags = (0x80 if self.end else 0) | (self.volume & 0x3F)
        return _EVENT.pack(code, flags, min(self.duration, 0xFFFF))


def parse_event(payload: bytes) -> TelephoneEvent:
    if len(payload) < _EVENT.size:
        raise DtmfError(f"telephone-event payload of {len(payload)} bytes")
    code, flags, duration = _EVENT.unpack_from(payload)
    if code >= len(EVENT_DIGITS):
        raise DtmfError(f"telephone-event {code} is not a DTMF digit")
    return TelephoneEvent(EVENT_DIGITS[code], bool(flags & 0x80), flags & 0x3F, duration)


def check_digits(digits: str) -> str:
    digits = digits.upper()
    bad = [d for d in digits if d not in EVENT_DIGITS]
    if bad:
        raise DtmfError(f"cannot send DTMF {''.join(bad)!r}: digits are 0-9 * # A-D")
    return digits


def dtmf_tone(digit: str, duration_ms: int = 160, rate: int = 8000, level: float = 0.25) -> bytes:
    """In-band dual tone for one key as 16-bit PCM (what a caller hears)."""
    low, high = DTMF_FREQUENCIES[check_digits(digit)]
    t = np.arange(rate * duration_ms // 1000) / rate
    wave = level * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t))
    return (wave * 32767).astype("<i2").tobytes()
