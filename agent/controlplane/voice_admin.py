"""How a voice clone gets computed, preloaded and previewed by the TTS that will speak it.

The management API only keeps the catalogue (the `voices` table); the clone itself is the
TTS engine's business. `VoiceAdmin` is that seam:

- `EngineVoiceAdmin` drives an in-process engine that can clone (Chatterbox: `add_voice`,
  `remove_voice`): the conditionals are computed, stored by models.voices and loaded into
  that engine at once; other replicas pick them up with `load_voices()`.
- `HttpVoiceAdmin` asks a running serving app (its /v1/audio/voices routes, see
  serving.voice_routes) to do the same, for an agent whose TTS runs in another process.
- `NoCloningVoiceAdmin` stands for engines that cannot clone (Piper, espeak-ng on the cpu
  profile): every clone request is refused with `CloningUnsupported`, a clear 409.

This module imports only numpy and our own light modules, so it also runs inside the
Chatterbox env (its own torch), where the engine lives.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from serving.audio import encode_wav
from serving.base import AudioChunk, BadInput, EngineError, UnknownVoice

PREVIEW_PHRASE = "Hello! This is a preview of my cloned voice. How does it sound?"


class CloningUnsupported(EngineError):
    """The configured TTS engine cannot clone voices (the API answers 409)."""

    def __init__(self, engine: str, reason: str | None = None) -> None:
        reason = reason or f"this TTS engine ({engine}) does not support voice cloning"
        super().__init__(f"{reason}; voice clones need the Chatterbox engine (the gpu profile)")
        self.engine = engine


@dataclass(frozen=True)
class ClonedVoice:
    """What the catalogue records about a clone the engine has stored and loaded."""

    id: str
    name: str
    engine: str
    conds_path: str
    conds_sha256: str
    source_sha256: str
    duration_s: float


@runtime_checkable
class VoiceAdmin(Protocol):
    engine_name: str
    supports_cloning: bool

    async def add(self, voice_id: str, audio: bytes, *, name: str | None = None) -> ClonedVoice:
        """Clone `voice_id` from reference audio file bytes and load it for speaking.

        Raises BadInput (bad audio or id), CloningUnsupported, EngineError."""
        ...

    async def remove(self, voice_id: str) -> None:
        """Delete the clone's files and unload it; a voice already gone is not an error."""
        ...

    async def preview(self, voice_id: str, text: str = PREVIEW_PHRASE) -> bytes:
        """`text` spoken in the voice, as a WAV file."""
        ...


async def _collect_wav(chunks: AsyncIterator[AudioChunk]) -> bytes:
    parts: list[np.ndarray] = []
    rate = 0
    async for chunk in chunks:
        parts.append(chunk.pcm)
        rate = chunk.sample_rate
    if not parts:
        raise EngineError("the TTS engine produced no audio for the preview")
    return encode_wav(np.concatenate(parts), rate)


class EngineVoiceAdmin:
    """Clones with an in-process engine that has `add_voice` / `remove_voice` (Chatterbox).

    The engine already runs blocking model work in a thread under its own lock."""

    supports_cloning = True

    def __init__(self, engine: Any) -> None:
        if not callable(getattr(engine, "add_voice", None)):
            raise TypeError(f"{type(engine).__name__} cannot clone voices (no add_voice)")
        self._engine = engine
        self.engine_name: str = getattr(engine, "name", type(engine).__name__)

    async def add(self, voice_id: str, audio: bytes, *, name: str | None = None) -> ClonedVoice:
        info = await self._engine.add_voice(voice_id, audio, name=name)
        return ClonedVoice(
            id=info.id,
            name=info.name,
            engine=info.engine,
            conds_path=str(Path(self._engine.voices_dir) / f"{info.id}.conds.pt"),
            conds_sha256=info.conds_sha256,
            source_sha256=info.source_sha256,
            duration_s=info.duration_s,
        )

    async def remove(self, voice_id: str) -> None:
        try:
            self._engine.remove_voice(voice_id)
        except UnknownVoice:
            pass  # already gone: deleting is idempotent

    async def preview(self, voice_id: str, text: str = PREVIEW_PHRASE) -> bytes:
        return await _collect_wav(self._engine.synthesize(text, voice_id))


class NoCloningVoiceAdmin:
    """For engines that cannot clone: every request says so (never a silent no-op)."""

    supports_cloning = False

    def __init__(self, engine_name: str) -> None:
        self.engine_name = engine_name

    async def add(self, voice_id: str, audio: bytes, *, name: str | None = None) -> ClonedVoice:
        raise CloningUnsupported(self.engine_name)

    async def remove(self, voice_id: str) -> None:
        # Nothing of a clone can be loaded in an engine that never cloned; the catalogue
        # row may still go (e.g. a voice made on another profile).
        return None

    async def preview(self, voice_id: str, text: str = PREVIEW_PHRASE) -> bytes:
        raise CloningUnsupported(self.engine_name)


class HttpVoiceAdmin:
    """Clones through a serving app's voice routes at `base_url` (e.g. http://127.0.0.1:8000).

    Whether that server's engine can clone is only known by asking: `supports_cloning` is
    True, and a 409 from the server becomes CloningUnsupported."""

    supports_cloning = True

    def __init__(self, base_url: str, *, timeout_s: float = 900.0) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s  # cloning on a CPU takes minutes
        self.engine_name = f"tts at {self._base_url}"

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx  # only this admin needs it; the module also runs in the Chatterbox env

        try:
            async with httpx.AsyncClient(base_url=self._base_url, timeout=self._timeout_s) as c:
                response = await c.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise EngineError(f"the TTS server at {self._base_url} is unreachable: {exc}") from None
        if response.status_code < 400:
            return response
        try:
            error = response.json()["error"]
            message, kind = str(error["message"]), error.get("type")
        except (ValueError, KeyError, TypeError):
            message, kind = response.text[:500], None
        if kind == "cloning_unsupported":
            raise CloningUnsupported(self.engine_name, message)
        if response.status_code == 404:
            raise UnknownVoice(message)
        if response.status_code in (400, 409, 413, 422):
            raise BadInput(message)
        raise EngineError(f"the TTS server answered {response.status_code}: {message}")

    async def add(self, voice_id: str, audio: bytes, *, name: str | None = None) -> ClonedVoice:
        data = {"voice_id": voice_id} | ({"name": name} if name else {})
        response = await self._request(
            "POST", "/v1/audio/voices", data=data, files={"file": ("reference", audio)}
        )
        body = response.json()
        return ClonedVoice(
            id=body["id"],
            name=body["name"],
            engine=body["engine"],
            conds_path=body["conds_path"],
            conds_sha256=body["conds_sha256"],
            source_sha256=body["source_sha256"],
            duration_s=float(body["duration_s"]),
        )

    async def remove(self, voice_id: str) -> None:
        try:
            await self._request("DELETE", f"/v1/audio/voices/{voice_id}")
        except (UnknownVoice, CloningUnsupported):
            pass  # nothing loaded there: deleting is idempotent

    async def preview(self, voice_id: str, text: str = PREVIEW_PHRASE) -> bytes:
        body = {"input": text, "voice": voice_id, "response_format": "wav"}
        return (await self._request("POST", "/v1/audio/speech", json=body)).content


def voice_admin_for(engine: Any) -> VoiceAdmin:
    """The admin matching what `engine` can do."""
    if callable(getattr(engine, "add_voice", None)):
        return EngineVoiceAdmin(engine)
    return NoCloningVoiceAdmin(getattr(engine, "name", type(engine).__name__))
