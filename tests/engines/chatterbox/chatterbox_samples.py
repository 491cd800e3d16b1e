"""Reference speech and engine settings shared by the Chatterbox engine tests."""

from __future__ import annotations

import io
import os

import soundfile as sf

from tests.speech import speak

REFERENCE_TEXT = (
    "Thank you for calling the store support line. My name is Maya, and I will help you "
    "get the receipt printer working again in a few minutes."
)
OTHER_REFERENCE_TEXT = (
    "Good morning, this is the night manager speaking. The printer in lane four has "
    "stopped printing, and the customers are starting to queue at the front."
)
# Small thread count: the machine is shared, and 2 contending OpenMP threads are slower.
TEST_THREADS = int(os.environ.get("TRUNKLINE_TEST_THREADS", "1"))
CFM_STEPS = 2  # S3Gen flow steps (model default 10): the flow dominates CPU time
SEED = 1234


def reference_wav(text: str, voice: str = "en-us", rate: int = 24000) -> bytes:
    """espeak-ng speech as WAV file bytes, like an uploaded reference clip."""
    pcm, got_rate = speak(text, rate=rate, voice=voice)
    buf = io.BytesIO()
    sf.write(buf, pcm, got_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()
