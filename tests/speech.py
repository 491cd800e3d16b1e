"""Real test speech on demand: espeak-ng says it, sox makes it sound like a phone line.

Also small text helpers to judge what STT heard (normalised words, word error rate).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"test speech needs the `{name}` binary (Debian package {name})")
    return path


def speak(text: str, rate: int = 16000, voice: str = "en-us") -> tuple[np.ndarray, int]:
    """espeak-ng speech for `text` as mono int16 at `rate` Hz (resampled by sox)."""
    with tempfile.TemporaryDirectory(prefix="trunkline-speech-") as tmp:
        raw, out = Path(tmp, "espeak.wav"), Path(tmp, "out.wav")
        # Text goes through stdin, never argv, and -w writes a WAV with real sizes.
        subprocess.run(
            [_tool("espeak-ng"), "-v", voice, "--stdin", "-w", str(raw)],
            input=text.encode(),
            check=True,
            capture_output=True,
            timeout=60,
        )
        _sox(raw, out, "-r", str(rate), "-c", "1", "-b", "16", "-e", "signed-integer")
        pcm, got_rate = sf.read(out, dtype="int16")
    return pcm, int(got_rate)


def phone_roundtrip(pcm: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    """What a caller sounds like after a G.711 line: 8 kHz mu-law and back to `rate`."""
    with tempfile.TemporaryDirectory(prefix="trunkline-phone-") as tmp:
        src, ulaw, back = Path(tmp, "in.wav"), Path(tmp, "ulaw.wav"), Path(tmp, "back.wav")
        sf.write(src, np.asarray(pcm, dtype=np.int16), rate, subtype="PCM_16")
        _sox(src, ulaw, "-r", "8000", "-c", "1", "-e", "mu-law", "-b", "8")
        _sox(ulaw, back, "-r", str(rate), "-c", "1", "-b", "16", "-e", "signed-integer")
        out, got_rate = sf.read(back, dtype="int16")
    return out, int(got_rate)


def _sox(src: Path, dst: Path, *out_opts: str) -> None:
    # -D: no dither, so the same text always gives the same samples (repeatable tests).
    subprocess.run(
        [_tool("sox"), "-V1", "-D", str(src), *out_opts, str(dst)],
        check=True,
        capture_output=True,
        timeout=60,
    )


_NUMBER_WORDS = {
    "0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five",
    "6": "six", "7": "seven", "8": "eight", "9": "nine", "10": "ten", "30": "thirty",
}  # fmt: skip


def words(text: str) -> list[str]:
    """Lower-case words without punctuation; single digits spelled out ("4" -> "four")."""
    out = []
    for token in re.findall(r"[a-z0-9']+", text.lower()):
        token = token.strip("'")
        if token:
            out.append(_NUMBER_WORDS.get(token, token))
    return out


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level edit distance / reference length."""
    ref, hyp = words(reference), words(hypothesis)
    if not ref:
        return float(bool(hyp))
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / len(ref)
