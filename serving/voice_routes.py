"""Voice-clone admin routes on the serving app, for the control plane's HttpVoiceAdmin:

    POST   /v1/audio/voices            multipart: file, voice_id, name -> the stored clone
    DELETE /v1/audio/voices/{voice_id} unload it and delete its files

The clone is computed by this server's TTS engine (`add_voice`, Chatterbox), stored in its
voices folder and loaded at once; an engine that cannot clone answers 409. These routes
are for the control plane on a trusted network, like the rest of the serving API.
Previews use the ordinary `/v1/audio/speech` with the voice's id.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Response, UploadFile

from serving.base import UnknownVoice
from serving.http_app import ApiError

MAX_REFERENCE_BYTES = 10 * 1024 * 1024


def _cloning_engine(tts: Any) -> Any:
    if not callable(getattr(tts, "add_voice", None)):
        raise ApiError(
            409,
            f"this TTS engine ({getattr(tts, 'name', type(tts).__name__)}) does not support "
            "voice cloning",
            "cloning_unsupported",
        )
    return tts


def add_voice_routes(app: FastAPI, tts: Callable[[], Any]) -> None:
    """Mount the routes on `app`; `tts()` returns the loaded TTS engine or raises ApiError."""

    @app.post("/v1/audio/voices", status_code=201)
    async def add_voice(
        file: Annotated[UploadFile, File()],
        voice_id: Annotated[str, Form(max_length=64)],
        name: Annotated[str | None, Form(max_length=255)] = None,
    ) -> dict[str, Any]:
        engine = _cloning_engine(tts())
        data = await file.read(MAX_REFERENCE_BYTES + 1)
        if len(data) > MAX_REFERENCE_BYTES:
            raise ApiError(413, "reference audio is larger than 10 MB")
        info = await engine.add_voice(voice_id, data, name=name)  # BadInput -> 400
        return {
            "id": info.id,
            "name": info.name,
            "engine": info.engine,
            "conds_path": str(engine.voices_dir / f"{info.id}.conds.pt"),
            "conds_sha256": info.conds_sha256,
            "source_sha256": info.source_sha256,
            "duration_s": info.duration_s,
        }

    @app.delete("/v1/audio/voices/{voice_id}", status_code=204)
    async def remove_voice(voice_id: str) -> Response:
        engine = _cloning_engine(tts())
        try:
            engine.remove_voice(voice_id)
        except UnknownVoice as exc:
            raise ApiError(404, str(exc), "not_found") from None
        return Response(status_code=204)
