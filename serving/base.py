"""Engine interfaces: one per model kind.

The agent, the HTTP routes and the Ray deployments talk to these and never to an
engine directly, so a CPU twin and a GPU engine are interchangeable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np


class EngineError(Exception):
    """An engine failed; the message is safe to show to an API user."""


class BadInput(EngineError):
    """The request itself is wrong (maps to HTTP 4xx)."""


class UnknownVoice(BadInput):
    pass


# ---------------------------------------------------------------- STT


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    text: str
    no_speech_prob: float = 0.0


@dataclass(frozen=True)
class Transcript:
    text: str
    segments: Sequence[Segment] = ()
    language: str = "en"
    audio_s: float = 0.0
    # stage name -> seconds (e.g. "resample", "encode", "decode", "total")
    timings: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class STTEngine(Protocol):
    name: str

    async def transcribe(self, pcm: np.ndarray, sample_rate: int) -> Transcript:
        """`pcm`: mono int16 (or float32 in [-1, 1]) samples at `sample_rate` Hz."""
        ...


# ---------------------------------------------------------------- LLM

Message = dict[str, Any]  # OpenAI chat message: {"role", "content", ...}
Tool = dict[str, Any]  # OpenAI tool: {"type": "function", "function": {...}}


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, validated against the tool's schema by the engine


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens served from the prefix cache / saved state


@dataclass(frozen=True)
class ChatDelta:
    """One streamed piece of an answer: text, a finished tool call, or the end."""

    text: str = ""
    tool_call: ToolCall | None = None
    finish_reason: Literal["stop", "length", "tool_calls"] | None = None
    usage: Usage | None = None  # set on the last delta


@runtime_checkable
class LLMEngine(Protocol):
    name: str

    def chat(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[Tool] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        response_format: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> AsyncIterator[ChatDelta]:
        """Stream the answer. Cancelling the iterator stops generation."""
        ...


# ---------------------------------------------------------------- TTS


@dataclass(frozen=True)
class AudioChunk:
    pcm: np.ndarray  # mono int16
    sample_rate: int


@runtime_checkable
class TTSEngine(Protocol):
    name: str

    def voices(self) -> list[str]: ...

    def synthesize(self, text: str, voice: str | None = None) -> AsyncIterator[AudioChunk]:
        """Stream audio, at least sentence by sentence. Empty text -> BadInput."""
        ...
