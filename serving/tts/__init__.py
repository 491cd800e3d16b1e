"""TTS engines. Imported lazily: a heavy engine's own environment (Chatterbox) imports
`serving.tts.<engine>` without having piper-tts installed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from serving.tts.espeak_engine import EspeakTTS
    from serving.tts.piper_engine import PiperTTS

__all__ = ["EspeakTTS", "PiperTTS"]

_MODULES = {"EspeakTTS": "serving.tts.espeak_engine", "PiperTTS": "serving.tts.piper_engine"}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        import importlib

        return getattr(importlib.import_module(_MODULES[name]), name)
    raise AttributeError(f"module 'serving.tts' has no attribute {name!r}")
