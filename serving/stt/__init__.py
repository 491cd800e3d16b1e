"""STT engines. Imported lazily so that `serving.stt.<engine>` in a heavy engine's own
environment does not drag in the CPU engine's dependencies."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from serving.stt.faster_whisper_engine import FasterWhisperSTT, WindowPolicy

__all__ = ["FasterWhisperSTT", "WindowPolicy"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from serving.stt import faster_whisper_engine

        return getattr(faster_whisper_engine, name)
    raise AttributeError(f"module 'serving.stt' has no attribute {name!r}")
