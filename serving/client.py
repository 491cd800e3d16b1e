"""How the agent (and the Ray ingress) reach the model servers.

Three transports, one interface: each client object implements the engine protocol
of serving.base, so code written against an engine runs unchanged on
  - engines in this process (`local_client`),
  - Ray Serve deployment handles (`ray_client`, streaming through the handles),
  - the OpenAI-style HTTP routes of a running server (`http_client`).
Errors keep their meaning across transports: BadInput stays BadInput, everything
else arrives as EngineError.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from serving.audio import encode_wav
from serving.base import (
    AudioChunk,
    BadInput,
    ChatDelta,
    EngineError,
    LLMEngine,
    Message,
    Segment,
    STTEngine,
    Tool,
    ToolCall,
    Transcript,
    TTSEngine,
    UnknownVoice,
    Usage,
)
from serving.ray_app import Refusal


@dataclass
class ServingClient:
    stt: STTEngine | None
    llm: LLMEngine | None
    tts: TTSEngine | None
    # transport resources to release (the HTTP connection pool)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def aclose(self) -> None:
        for close in self.closers:
            await close()


def local_client(
    stt: STTEngine | None = None, llm: LLMEngine | None = None, tts: TTSEngine | None = None
) -> ServingClient:
    """Engines in this process, used directly (one-box installs, tests)."""
    return ServingClient(stt=stt, llm=llm, tts=tts)


# ---------------------------------------------------------------- Ray handles


def _unwrap_ray_error(exc: BaseException) -> BaseException:
    """Ray wraps replica exceptions; hand back ours so callers can tell 4xx from 5xx."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, EngineError):
        return cause
    if isinstance(exc, EngineError):
        return exc
    return EngineError(f"model server failed: {type(exc).__name__}: {cause or exc}")


class RaySTT:
    def __init__(self, handle: Any, name: str) -> None:
        self._handle = handle
        self.name = name

    async def transcribe(self, pcm: np.ndarray, sample_rate: int) -> Transcript:
        try:
            result = await self._handle.transcribe.remote(pcm, sample_rate)
        except Exception as exc:
            raise _unwrap_ray_error(exc) from None
        if isinstance(result, Refusal):
            raise result.error()
        return result


class RayLLM:
    def __init__(self, handle: Any, name: str) -> None:
        self._unary = handle
        self._handle = handle.options(stream=True)
        self.name = name

    async def warm(self, messages: Sequence[Message], tools: Sequence[Tool] | None = None) -> int:
        """Prefill the stable prompt prefix in the deployment's engine (tokens, 0: none)."""
        try:
            result = await self._unary.warm.remote(list(messages), list(tools) if tools else None)
        except EngineError:
            raise
        except Exception as exc:
            raise _unwrap_ray_error(exc) from None
        if isinstance(result, Refusal):
            raise result.error()
        return int(result)

    async def chat(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[Tool] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        response_format: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> AsyncIterator[ChatDelta]:
        stream = self._handle.chat.remote(
            list(messages),
            tools=list(tools) if tools else None,
            tool_choice=tool_choice,
            response_format=response_format,
            max_tokens=max_tokens,
            temperature=temperature,
        )
        try:
            async for delta in stream:
                if isinstance(delta, Refusal):
                    raise delta.error()
                yield delta
        except EngineError:
            raise
        except Exception as exc:
            raise _unwrap_ray_error(exc) from None
        finally:
            stream.cancel()  # the caller stopped early (barge-in): stop generating


class RayTTS:
    def __init__(self, handle: Any, name: str, voices: list[str]) -> None:
        self._handle = handle
        self._stream = handle.options(stream=True)
        self.name = name
        self._voices = voices

    def voices(self) -> list[str]:
        return list(self._voices)

    async def synthesize(self, text: str, voice: str | None = None) -> AsyncIterator[AudioChunk]:
        stream = self._stream.synthesize.remote(text, voice)
        try:
            async for chunk in stream:
                if isinstance(chunk, Refusal):
                    raise chunk.error()
                yield chunk
        except EngineError:
            raise
        except Exception as exc:
            raise _unwrap_ray_error(exc) from None
        finally:
            stream.cancel()


async def ray_client(app_name: str = "trunkline") -> ServingClient:
    """Handles to the deployments of a running trunkline Serve app."""
    from ray import serve

    engines: dict[str, Any] = {}
    for kind in ("stt", "llm", "tts"):
        try:
            handle = serve.get_deployment_handle(kind, app_name=app_name)
        except Exception:  # that kind is not deployed in this app
            continue
        engines[kind] = handle
    return await client_from_handles(engines.get("stt"), engines.get("llm"), engines.get("tts"))


async def client_from_handles(stt: Any, llm: Any, tts: Any) -> ServingClient:
    async def describe(handle: Any) -> dict[str, Any]:
        return await handle.describe.remote()

    return ServingClient(
        stt=RaySTT(stt, (await describe(stt))["name"]) if stt is not None else None,
        llm=RayLLM(llm, (await describe(llm))["name"]) if llm is not None else None,
        tts=(
            RayTTS(tts, (info := await describe(tts))["name"], info["voices"])
            if tts is not None
            else None
        ),
    )


# ---------------------------------------------------------------- HTTP


def _raise_for_error(status: int, body: bytes) -> None:
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = body.decode("utf-8", "replace")[:500]
    if 400 <= status < 500:
        raise BadInput(message)
    raise EngineError(f"HTTP {status}: {message}")


class _HttpEngine:
    def __init__(self, http: httpx.AsyncClient, name: str) -> None:
        self._http = http
        self.name = name


class HttpSTT(_HttpEngine):
    async def transcribe(self, pcm: np.ndarray, sample_rate: int) -> Transcript:
        wav = encode_wav(pcm, sample_rate)
        resp = await self._http.post(
            "/v1/audio/transcriptions",
            files={"file": ("audio.wav", wav, "audio/wav")},
            data={"response_format": "verbose_json"},
        )
        if resp.status_code != 200:
            _raise_for_error(resp.status_code, resp.content)
        body = resp.json()
        return Transcript(
            text=body["text"],
            segments=tuple(
                Segment(s["start"], s["end"], s["text"], s.get("no_speech_prob", 0.0))
                for s in body.get("segments", [])
            ),
            language=body.get("language", "en"),
            audio_s=body.get("duration", 0.0),
        )


class HttpLLM(_HttpEngine):
    async def chat(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[Tool] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        response_format: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> AsyncIterator[ChatDelta]:
        body: dict[str, Any] = {
            "messages": list(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        for key, value in (
            ("tools", tools),
            ("tool_choice", tool_choice),
            ("response_format", response_format),
        ):
            if value is not None:
                body[key] = list(value) if key == "tools" else value
        async with self._http.stream("POST", "/v1/chat/completions", json=body) as resp:
            if resp.status_code != 200:
                _raise_for_error(resp.status_code, await resp.aread())
            finish: str | None = None
            async for line in resp.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[len("data: ") :]
                if data == "[DONE]":
                    return
                event = json.loads(data)
                if "error" in event:
                    err = event["error"]
                    cls = BadInput if err.get("type") == "invalid_request_error" else EngineError
                    raise cls(err.get("message", "model server error"))
                if event.get("usage") and not event.get("choices"):
                    yield ChatDelta(finish_reason=finish, usage=_usage(event["usage"]))  # type: ignore[arg-type]
                    continue
                choice = event["choices"][0]
                delta = choice.get("delta", {})
                if delta.get("content"):
                    yield ChatDelta(text=delta["content"])
                for call in delta.get("tool_calls") or []:
                    fn = call["function"]
                    yield ChatDelta(tool_call=ToolCall(call["id"], fn["name"], fn["arguments"]))
                finish = choice.get("finish_reason") or finish


def _usage(raw: dict[str, Any]) -> Usage:
    return Usage(
        prompt_tokens=raw.get("prompt_tokens", 0),
        completion_tokens=raw.get("completion_tokens", 0),
        cached_tokens=(raw.get("prompt_tokens_details") or {}).get("cached_tokens", 0),
    )


class HttpTTS(_HttpEngine):
    def __init__(self, http: httpx.AsyncClient, name: str, voices: list[str]) -> None:
        super().__init__(http, name)
        self._voices = voices

    def voices(self) -> list[str]:
        return list(self._voices)

    async def synthesize(self, text: str, voice: str | None = None) -> AsyncIterator[AudioChunk]:
        if voice is not None and voice not in self._voices:
            raise UnknownVoice(f"unknown voice {voice!r} (available: {self._voices})")
        body = {"input": text, "voice": voice, "response_format": "pcm"}
        async with self._http.stream("POST", "/v1/audio/speech", json=body) as resp:
            if resp.status_code != 200:
                _raise_for_error(resp.status_code, await resp.aread())
            rate = int(resp.headers["X-Sample-Rate"])
            carry = b""  # an odd byte split across network reads
            async for data in resp.aiter_bytes():
                data = carry + data
                cut = len(data) - len(data) % 2
                carry = data[cut:]
                if cut:
                    yield AudioChunk(np.frombuffer(data[:cut], dtype=np.int16), rate)


async def http_client(base_url: str, *, timeout_s: float = 120.0) -> ServingClient:
    """Clients for a running trunkline server (`trunkline serve`), e.g. http://127.0.0.1:8000."""
    http = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, trust_env=False)
    try:
        resp = await http.get("/v1/models")
        resp.raise_for_status()
        models = {m["kind"]: m for m in resp.json()["data"]}
        voices: list[str] = []
        if "tts" in models:
            voices = (await http.get("/v1/audio/voices")).json()["voices"]
    except Exception:
        await http.aclose()
        raise
    return ServingClient(
        stt=HttpSTT(http, models["stt"]["engine"]) if "stt" in models else None,
        llm=HttpLLM(http, models["llm"]["engine"]) if "llm" in models else None,
        tts=HttpTTS(http, models["tts"]["engine"], voices) if "tts" in models else None,
        closers=[http.aclose],
    )
