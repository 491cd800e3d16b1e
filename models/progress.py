"""Progress for long steps (hashing, assembling), written to stderr.

Quiet for anything that finishes within a second, so warm starts print nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Protocol, TextIO


class Progress(Protocol):
    def advance(self, nbytes: int) -> None: ...

    def close(self) -> None: ...


# (label, total bytes) -> Progress
ProgressFactory = Callable[[str, int], Progress]

_QUIET_FOR_S = 1.0


class StderrProgress:
    """Percent and MB done; redraws in place on a terminal, a line every few seconds in logs."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None):
        self._label = label
        self._total = max(total, 1)
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty()
        self._interval_s = 0.25 if self._tty else 5.0
        self._done = 0
        self._started = time.monotonic()
        self._last_shown = self._started + _QUIET_FOR_S - self._interval_s
        self._shown = False

    def advance(self, nbytes: int) -> None:
        self._done += nbytes
        now = time.monotonic()
        if now - self._last_shown >= self._interval_s:
            self._last_shown = now
            self._show(end="\r" if self._tty else "\n")

    def close(self) -> None:
        if self._shown:
            elapsed = time.monotonic() - self._started
            self._write(f"{self._label}: done, {_mb(self._done)} in {elapsed:.1f} s\n")

    def _show(self, end: str) -> None:
        self._shown = True
        percent = 100 * self._done / self._total
        done, total = _mb(self._done), _mb(self._total)
        self._write(f"{self._label}: {percent:3.0f}% ({done} of {total}){end}")

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()


class NullProgress:
    def advance(self, nbytes: int) -> None:
        pass

    def close(self) -> None:
        pass


def stderr_progress(label: str, total: int) -> Progress:
    return StderrProgress(label, total)


def no_progress(label: str, total: int) -> Progress:
    return NullProgress()


def _mb(nbytes: int) -> str:
    return f"{nbytes / 1e6:.0f} MB"
