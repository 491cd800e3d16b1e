"""OpenAI-style HTTP routes on the engine protocols.

The same app serves the in-process stack (uvicorn, `--no-ray`) and the Ray Serve
ingress (engines there are handle adapters from serving.client), so both paths
behave identically. Errors always come back as `{"error": {...}}` JSON: 4xx for a
bad request, 503 when an engine is not ready, fails or times out.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from serving.audio import decode_audio, encode_wav
from serving.base import (
    BadInput,
    ChatDelta,
    EngineError,
    LLMEngine,
    STTEngine,
    TTSEngine,
    Usage,
)

MAX_UPLOAD_BYTES = 25 * 1024 * 1024  # same ceiling as OpenAI's transcription API
MAX_SPEECH_CHARS = 4096


@dataclass
class Engines:
    stt: STTEngine | None = None
    llm: LLMEngine | None = None
    tts: TTSEngine | None = None


@dataclass
class ServingState:
    """What the routes serve from; filled in once the engines have loaded."""

    engines: Engines | None = None
    load_error: str | None = None
    model_names: dict[str, str] = field(default_factory=dict)  # kind -> configured model name
    first_output_timeout_s: float = 60.0
    total_timeout_s: float = 300.0


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status)


# ---------------------------------------------------------------- request bodies


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None

    @field_validator("content")
    @classmethod
    def _text_parts_only(cls, content: Any) -> Any:
        # OpenAI clients may send content as parts; the engines take plain text.
        if not isinstance(content, list):
            return content
        texts = []
        for part in content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ValueError(f"only text content parts are supported, not {part.get('type')!r}")
            texts.append(part["text"])
        return "".join(texts)


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=32768)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=32768)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)

    @field_validator("tools")
    @classmethod
    def _tools_are_functions(cls, tools: list[dict[str, Any]] | None) -> Any:
        for i, tool in enumerate(tools or []):
            fn = tool.get("function")
            if tool.get("type") != "function" or not isinstance(fn, dict) or not fn.get("name"):
                raise ValueError(
                    f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ...}}}}"
                )
        return tools


class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    input: str = Field(max_length=MAX_SPEECH_CHARS)
    voice: str | None = None
    model: str | None = None
    response_format: Literal["wav", "pcm"] = "wav"


# ---------------------------------------------------------------- app


def build_app(state: ServingState) -> FastAPI:
    app = FastAPI(title="trunkline serving", version="0.1.0")

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.kind)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(
            400, "malformed request: " + _describe_validation(exc), "invalid_request_error"
        )

    @app.exception_handler(BadInput)
    async def _bad_input(_: Request, exc: BadInput) -> JSONResponse:
        return _error(400, str(exc), "invalid_request_error")

    @app.exception_handler(EngineError)
    async def _engine_error(_: Request, exc: EngineError) -> JSONResponse:
        return _error(503, f"engine failed: {exc}", "engine_error")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal error: {type(exc).__name__}: {exc}", "server_error")

    def engine(kind: str) -> Any:
        if state.engines is None:
            if state.load_error:
                raise ApiError(503, f"engines failed to load: {state.load_error}", "engine_error")
            raise ApiError(503, "engines are still loading", "engine_unavailable")
        found = getattr(state.engines, kind)
        if found is None:
            raise ApiError(404, f"no {kind} engine is configured on this server", "not_found")
        return found

    async def bounded(awaitable: Awaitable[Any], what: str) -> Any:
        try:
            async with asyncio.timeout(state.total_timeout_s):
                return await awaitable
        except TimeoutError:
            raise ApiError(
                503, f"{what} timed out after {state.total_timeout_s:g} s", "timeout"
            ) from None

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        if state.engines is not None:
            return JSONResponse({"status": "ok"})
        if state.load_error:
            return JSONResponse({"status": "failed", "error": state.load_error}, 503)
        return JSONResponse({"status": "loading"}, 503)

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        data = []
        if state.engines is not None:
            for kind in ("llm", "stt", "tts"):
                eng = getattr(state.engines, kind)
                if eng is not None:
                    data.append(
                        {
                            "id": state.model_names.get(kind) or eng.name,
                            "object": "model",
                            "owned_by": "trunkline",
                            "kind": kind,
                            "engine": eng.name,
                        }
                    )
        return {"object": "list", "data": data}

    @app.get("/v1/audio/voices")
    async def list_voices() -> dict[str, Any]:
        return {"voices": engine("tts").voices()}

    # ------------------------------------------------------------ STT

    @app.post("/v1/audio/transcriptions", response_model=None)
    async def transcriptions(
        file: Annotated[UploadFile, File()],
        model: Annotated[str | None, Form()] = None,
        response_format: Annotated[str, Form()] = "json",
        language: Annotated[str | None, Form()] = None,
    ) -> Response:
        if response_format not in ("json", "text", "verbose_json"):
            raise ApiError(
                400, f"response_format must be json, text or verbose_json, not {response_format!r}"
            )
        stt = engine("stt")
        data = await file.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise ApiError(413, f"audio file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
        # Decoding a long file is CPU work: keep it off the event loop.
        pcm, rate = await asyncio.to_thread(decode_audio, data)
        transcript = await bounded(stt.transcribe(pcm, rate), "transcription")
        if response_format == "text":
            return Response(transcript.text, media_type="text/plain")
        if response_format == "json":
            return JSONResponse({"text": transcript.text})
        return JSONResponse(
            {
                "task": "transcribe",
                "language": transcript.language,
                "duration": transcript.audio_s,
                "text": transcript.text,
                "segments": [
                    {
                        "id": i,
                        "start": s.start_s,
                        "end": s.end_s,
                        "text": s.text,
                        "no_speech_prob": s.no_speech_prob,
                    }
                    for i, s in enumerate(transcript.segments)
                ],
            }
        )

    # ------------------------------------------------------------ TTS

    @app.post("/v1/audio/speech", response_model=None)
    async def speech(body: SpeechRequest) -> Response:
        tts = engine("tts")
        if not body.input.strip():
            raise ApiError(400, "input is empty: nothing to speak")
        chunks = tts.synthesize(body.input, body.voice)
        first = await _first_item(chunks, state.first_output_timeout_s, "speech synthesis")
        if first is None:
            raise ApiError(503, "the TTS engine produced no audio", "engine_error")
        if body.response_format == "pcm":
            # Raw 16-bit PCM streamed as it is made; the rate travels in a header.
            async def pcm_stream() -> AsyncIterator[bytes]:
                yield _int16(first.pcm).tobytes()
                async for chunk in chunks:
                    yield _int16(chunk.pcm).tobytes()

            return StreamingResponse(
                pcm_stream(),
                media_type="audio/L16",
                headers={"X-Sample-Rate": str(first.sample_rate)},
            )
        parts = [_int16(first.pcm)]
        parts += [_int16(c.pcm) async for c in _with_deadline(chunks, state.total_timeout_s)]
        wav = await asyncio.to_thread(encode_wav, np.concatenate(parts), first.sample_rate)
        return Response(wav, media_type="audio/wav")

    # Voice-clone admin (POST/DELETE /v1/audio/voices); imported here, as it uses ApiError.
    from serving.voice_routes import add_voice_routes

    add_voice_routes(app, lambda: engine("tts"))

    # ------------------------------------------------------------ LLM

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatRequest) -> Response:
        llm = engine("llm")
        _check_tool_choice(body)
        deltas = llm.chat(
            [m.model_dump(exclude_none=True) for m in body.messages],
            tools=body.tools,
            tool_choice=body.tool_choice,
            response_format=body.response_format,
            max_tokens=body.max_completion_tokens or body.max_tokens or 256,
            temperature=body.temperature,
        )
        # Wait for the first delta before answering, so a bad request is a 4xx and
        # not an error buried in a 200 stream.
        first = await _first_item(deltas, state.first_output_timeout_s, "chat completion")
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        model = body.model or state.model_names.get("llm") or llm.name
        rest = _with_deadline(deltas, state.total_timeout_s)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(
                _sse(first, rest, completion_id, model, include_usage),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        return JSONResponse(await _collect(first, rest, completion_id, model))

    return app


# ---------------------------------------------------------------- helpers


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        if err.get("type") == "json_invalid":
            parts.append("body is not valid JSON")
            continue
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def _check_tool_choice(body: ChatRequest) -> None:
    choice = body.tool_choice
    if choice is None:
        return
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise ApiError(
                400, f"tool_choice must be auto, none, required or a function, not {choice!r}"
            )
        if choice == "required" and not body.tools:
            raise ApiError(400, "tool_choice 'required' needs tools")
        return
    name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    if not name:
        raise ApiError(400, "tool_choice must be {'type': 'function', 'function': {'name': ...}}")
    known = [t["function"]["name"] for t in body.tools or []]
    if name not in known:
        raise ApiError(400, f"tool_choice names unknown tool {name!r} (tools: {known})")


async def _first_item(stream: AsyncIterator[Any], timeout_s: float, what: str) -> Any:
    try:
        async with asyncio.timeout(timeout_s):
            return await anext(stream, None)
    except TimeoutError:
        await _close(stream)
        raise ApiError(503, f"{what}: no output within {timeout_s:g} s", "timeout") from None


async def _with_deadline(stream: AsyncIterator[Any], timeout_s: float) -> AsyncIterator[Any]:
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    item = await anext(stream, None)
            except TimeoutError:
                raise EngineError(f"generation timed out after {timeout_s:g} s") from None
            if item is None:
                return
            yield item
    finally:
        await _close(stream)


async def _close(stream: AsyncIterator[Any]) -> None:
    aclose: Callable[[], Awaitable[None]] | None = getattr(stream, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            pass  # closing a failed stream must not hide the original error


def _int16(pcm: np.ndarray) -> np.ndarray:
    if pcm.dtype == np.int16:
        return pcm
    return (np.clip(pcm, -1.0, 1.0) * 32767.0).astype(np.int16)


def _tool_call_json(index: int, delta: ChatDelta) -> dict[str, Any]:
    call = delta.tool_call
    assert call is not None
    return {
        "index": index,
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def _usage_json(usage: Usage | None) -> dict[str, Any]:
    usage = usage or Usage()
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


async def _collect(
    first: ChatDelta | None, rest: AsyncIterator[ChatDelta], completion_id: str, model: str
) -> dict[str, Any]:
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    finish, usage = "stop", None

    def take(delta: ChatDelta) -> None:
        nonlocal finish, usage
        text.append(delta.text)
        if delta.tool_call is not None:
            calls.append(_tool_call_json(len(calls), delta))
        finish = delta.finish_reason or finish
        usage = delta.usage or usage

    if first is not None:
        take(first)
    async for delta in rest:
        take(delta)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in calls]
        finish = "tool_calls"
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": _usage_json(usage),
    }


async def _sse(
    first: ChatDelta | None,
    rest: AsyncIterator[ChatDelta],
    completion_id: str,
    model: str,
    include_usage: bool,
) -> AsyncIterator[str]:
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(body)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    n_calls, finish, usage = 0, "stop", None

    async def all_deltas() -> AsyncIterator[ChatDelta]:
        if first is not None:
            yield first
        async for d in rest:
            yield d

    try:
        async for delta in all_deltas():
            if delta.text:
                yield chunk({"content": delta.text})
            if delta.tool_call is not None:
                yield chunk({"tool_calls": [_tool_call_json(n_calls, delta)]})
                n_calls += 1
            finish = delta.finish_reason or finish
            usage = delta.usage or usage
    except Exception as exc:
        # Headers are already sent: report the failure in-band, then end the stream.
        kind = "invalid_request_error" if isinstance(exc, BadInput) else "engine_error"
        yield f"data: {json.dumps({'error': {'message': str(exc), 'type': kind}})}\n\n"
        yield "data: [DONE]\n\n"
        return
    yield chunk({}, "tool_calls" if n_calls else finish)
    if include_usage:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": _usage_json(usage),
        }
        yield f"data: {json.dumps(body)}\n\n"
    yield "data: [DONE]\n\n"
