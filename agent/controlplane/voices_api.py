"""Voice-clone management under /api: upload reference audio, list, get, delete, preview.

    app.include_router(build_voices_router(store, tts_admin), prefix="/api")

The upload is checked here before any model work (size, format, decodable, 5-60 s, not
silent), so bad audio is a clear 4xx and nothing is stored. The clone itself is computed
and preloaded by `tts_admin` (see voice_admin); the `voices` table is the catalogue,
written only after the engine has stored the clone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import PurePath
from typing import Annotated, Any

import numpy as np
from fastapi import (
    APIRouter,
    Body,
    Depends,
    File,
    Form,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
    UploadFile,
    status,
)
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy import select
from starlette.types import Message, Receive

from agent.controlplane import apikeys, schemas, service
from agent.controlplane.api import _ERRORS, _ErrorMappingRoute
from agent.controlplane.auth import bearer, require_scope
from agent.controlplane.db import ControlPlaneStore
from agent.controlplane.errors import InvalidField, NotFound
from agent.controlplane.models import Voice
from agent.controlplane.rate_limit import RateLimit, limit_from_env
from agent.controlplane.voice_admin import PREVIEW_PHRASE, CloningUnsupported, VoiceAdmin
from models.voices import VOICE_ID_PATTERN
from serving.audio import decode_audio, to_float32
from serving.base import BadInput, EngineError, UnknownVoice

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
# The whole request: the file plus multipart framing and the small form fields.
MAX_REQUEST_BYTES = MAX_UPLOAD_BYTES + 1024 * 1024
UPLOADS_PER_MINUTE_ENV = "TRUNKLINE_VOICE_UPLOADS_PER_MINUTE"
DEFAULT_UPLOADS_PER_MINUTE = 10
MIN_REFERENCE_S = 5.0
MAX_REFERENCE_S = 60.0
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3")
_SILENCE_PEAK = 1e-3  # float amplitude below which a clip carries no voice

VoiceIdPath = Annotated[
    str, Path(max_length=64, pattern=VOICE_ID_PATTERN.pattern, description="The voice's id.")
]


class VoiceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    engine: str
    sha256: str = Field(description="sha256 of the stored conditionals file")
    created_at: datetime


class PreviewIn(BaseModel):
    text: Annotated[
        str,
        Field(min_length=1, max_length=500, pattern=r"\S"),
        AfterValidator(schemas.db_safe_text),
    ] = PREVIEW_PHRASE


class _VoiceErrorRoute(_ErrorMappingRoute):
    """The control plane's mapping plus the TTS engine's errors."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def mapped(request: Request) -> Response:
            if request.method == "POST":
                # Refuse an oversized body before the form parser spools it to disk.
                declared = request.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
                    return _too_large()
                request = Request(request.scope, _capped(request.receive, MAX_REQUEST_BYTES))
            try:
                return await handler(request)
            except _BodyTooLarge:
                return _too_large()
            except CloningUnsupported as exc:
                return JSONResponse({"detail": str(exc)}, status.HTTP_409_CONFLICT)
            except UnknownVoice as exc:
                return JSONResponse({"detail": str(exc)}, status.HTTP_404_NOT_FOUND)
            except BadInput as exc:
                # Same shape as FastAPI's validation errors: the documented 422 body.
                detail = [{"loc": ["body"], "msg": str(exc), "type": "value_error"}]
                return JSONResponse({"detail": detail}, status.HTTP_422_UNPROCESSABLE_CONTENT)
            except EngineError as exc:
                return JSONResponse(
                    {"detail": f"the TTS engine failed: {exc}"}, status.HTTP_502_BAD_GATEWAY
                )

        return mapped


def check_reference_audio(data: bytes, filename: str | None) -> float:
    """Validate an upload as clone reference audio; its duration in seconds.

    Raises BadInput naming what is wrong. Blocking (decodes): call it in a thread."""
    suffix = PurePath(filename or "").suffix.lower()
    if suffix not in AUDIO_SUFFIXES:
        raise BadInput(
            f"reference audio must be a {', '.join(AUDIO_SUFFIXES)} file "
            f"(got {filename or 'no file name'!r})"
        )
    pcm, rate = decode_audio(data, max_s=MAX_REFERENCE_S)
    duration = len(pcm) / rate
    if duration < MIN_REFERENCE_S:
        raise BadInput(
            f"reference audio is {duration:.1f} s; a voice clone needs "
            f"{MIN_REFERENCE_S:.0f}-{MAX_REFERENCE_S:.0f} s of speech"
        )
    if duration > MAX_REFERENCE_S:
        raise BadInput(f"reference audio is {duration:.0f} s; give at most {MAX_REFERENCE_S:.0f} s")
    if float(np.max(np.abs(to_float32(pcm)))) < _SILENCE_PEAK:
        raise BadInput("reference audio is silent")
    return duration


class _BodyTooLarge(HTTPException):
    # An HTTPException, so FastAPI's body parsing lets it through unchanged.
    def __init__(self) -> None:
        super().__init__(status.HTTP_413_CONTENT_TOO_LARGE)


def _capped(receive: Receive, limit: int) -> Receive:
    """`receive` that raises _BodyTooLarge once the body passes `limit` bytes (for
    bodies sent without a Content-Length, e.g. chunked)."""
    seen = 0

    async def limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _BodyTooLarge()
        return message

    return limited


def _key_prefix(key: str) -> str:
    """An API key's public prefix: one per key, and no secret to keep in memory."""
    match = apikeys.KEY_PATTERN.fullmatch(key)
    return match.group(1) if match else key[:16]


def _too_many(limit: int, retry_after_s: int) -> JSONResponse:
    return JSONResponse(
        {
            "detail": f"too many voice uploads with this API key: at most {limit} a minute; "
            f"try again in {retry_after_s} s"
        },
        status.HTTP_429_TOO_MANY_REQUESTS,
        headers={"Retry-After": str(retry_after_s)},
    )


def _too_large() -> JSONResponse:
    return JSONResponse(
        {"detail": f"reference audio is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB"},
        status.HTTP_413_CONTENT_TOO_LARGE,
    )


def build_voices_router(
    store: ControlPlaneStore, tts_admin: VoiceAdmin, *, uploads_per_minute: int | None = None
) -> APIRouter:
    """The /voices routes over `store`, cloning with `tts_admin`. Each API key may start
    `uploads_per_minute` uploads a minute (default ${UPLOADS_PER_MINUTE_ENV}, else 10;
    0: no limit): cloning is the expensive request."""
    if uploads_per_minute is None:
        uploads_per_minute = limit_from_env(UPLOADS_PER_MINUTE_ENV, DEFAULT_UPLOADS_PER_MINUTE)
    uploads = RateLimit(uploads_per_minute, window_s=60.0)
    router = APIRouter(route_class=_VoiceErrorRoute, responses=_ERRORS, tags=["voices"])
    read = [Depends(require_scope(store, "read"))]
    admin = [Depends(require_scope(store, "admin"))]

    async def _get(voice_id: str) -> Voice:
        async with store.session() as s:
            row = await s.get(Voice, voice_id)
        if row is None:
            raise NotFound(f"voice {voice_id!r} not found")
        return row

    @router.post(
        "/voices",
        status_code=201,
        dependencies=admin,
        responses={
            409: {"description": "The id is taken, or the TTS engine cannot clone voices"},
            413: {"description": "The upload is larger than 10 MB"},
            422: {"description": "Bad, truncated, too short, too long or silent audio"},
            429: {"description": "Too many uploads with this API key; see Retry-After"},
            502: {"description": "The TTS engine failed to compute the clone"},
        },
    )
    async def create_voice(
        # The key `admin` has just admitted (FastAPI hands the same parsed header over).
        credentials: Annotated[HTTPAuthorizationCredentials, Depends(bearer)],
        file: Annotated[UploadFile, File(description="Reference speech: wav, flac or mp3, 5-60 s")],
        voice_id: Annotated[str, Form(max_length=64, pattern=VOICE_ID_PATTERN.pattern)],
        name: Annotated[
            str | None,
            Form(min_length=1, max_length=255, pattern=r"\S"),
            AfterValidator(lambda v: v if v is None else schemas.db_safe_text(v)),
        ] = None,
    ) -> Any:
        """Clone a voice from reference audio and preload it in the TTS."""
        # The parser spooled the upload to disk; read no more than the limit into memory.
        data = await file.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            return _too_large()
        # Counted from here, where the audio work starts: good or bad audio alike.
        retry_after_s = uploads.take(_key_prefix(credentials.credentials))
        if retry_after_s is not None:
            return _too_many(uploads.limit, retry_after_s)
        try:
            await asyncio.to_thread(check_reference_audio, data, file.filename)
        except BadInput as exc:
            raise InvalidField("file", str(exc)) from None
        async with store.session() as s:
            if await s.get(Voice, voice_id) is not None:
                return JSONResponse(
                    {"detail": f"voice {voice_id!r} already exists; delete it first"},
                    status.HTTP_409_CONFLICT,
                )
        try:
            clone = await tts_admin.add(voice_id, data, name=name)
        except UnknownVoice:
            raise
        except BadInput as exc:  # what the engine found wrong with the audio or the id
            raise InvalidField("file", str(exc)) from None
        try:
            async with store.session() as s:
                row = Voice(
                    id=clone.id,
                    name=clone.name,
                    engine=clone.engine,
                    conds_path=clone.conds_path,
                    sha256=clone.conds_sha256,
                )
                s.add(row)
                await s.flush()
                out = VoiceOut.model_validate(row)
        except BaseException:
            # The catalogue refused it (e.g. a concurrent upload won): unload what the
            # engine stored, so engine and catalogue agree.
            await tts_admin.remove(voice_id)
            raise
        return JSONResponse(out.model_dump(mode="json"), status.HTTP_201_CREATED)

    @router.get("/voices", dependencies=read)
    async def list_voices(
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0, le=schemas.DB_INT_MAX)] = 0,
    ) -> schemas.Page[VoiceOut]:
        async with store.session() as s:
            rows, total = await service.page(
                s, select(Voice).order_by(Voice.id), limit=limit, offset=offset
            )
            items = [VoiceOut.model_validate(r) for r in rows]
        return schemas.Page(items=items, total=total, limit=limit, offset=offset)

    @router.get("/voices/{voice_id}", dependencies=read)
    async def get_voice(voice_id: VoiceIdPath) -> VoiceOut:
        return VoiceOut.model_validate(await _get(voice_id))

    @router.delete("/voices/{voice_id}", status_code=204, dependencies=admin)
    async def delete_voice(voice_id: VoiceIdPath) -> None:
        """Unload the clone from the TTS, delete its files, then its catalogue row."""
        await _get(voice_id)
        await tts_admin.remove(voice_id)
        async with store.session() as s:
            row = await s.get(Voice, voice_id)
            if row is not None:
                await s.delete(row)
        return None

    @router.post(
        "/voices/{voice_id}/preview",
        dependencies=admin,
        response_class=Response,
        responses={
            200: {"content": {"audio/wav": {}}, "description": "The phrase as a WAV file"},
            409: {"description": "The TTS engine cannot clone voices"},
        },
    )
    async def preview_voice(
        voice_id: VoiceIdPath, body: Annotated[PreviewIn | None, Body()] = None
    ) -> Response:
        """Speak a test phrase in the voice."""
        await _get(voice_id)
        wav = await tts_admin.preview(voice_id, (body or PreviewIn()).text)
        return Response(wav, media_type="audio/wav")

    return router
