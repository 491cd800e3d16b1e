"""Serving config (YAML) -> validated settings -> engines.

The config names engines by a short alias (or a `module:Class` path) and models by
their model-store name; this module is the only place that turns those into engine
classes and local paths, so engines themselves never see a hub id or a name.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from serving.base import (
    AudioChunk,
    BadInput,
    EngineError,
    LLMEngine,
    STTEngine,
    TTSEngine,
    UnknownVoice,
)

Kind = Literal["stt", "llm", "tts"]
KINDS: tuple[Kind, ...] = ("stt", "llm", "tts")
PROFILES = ("cpu", "gpu")


class ConfigError(ValueError):
    """The serving config is wrong; the message names the key and the problem."""


@dataclass(frozen=True)
class EngineClass:
    kind: Kind
    target: str  # "module:Class"
    path_arg: str | None  # constructor keyword that receives the resolved model path


# Aliases accepted in `engine:`; a literal "module:Class" is accepted too.
ENGINE_ALIASES: dict[str, EngineClass] = {
    "faster-whisper": EngineClass(
        "stt", "serving.stt.faster_whisper_engine:FasterWhisperSTT", "model_dir"
    ),
    "llama-cpp": EngineClass("llm", "serving.llm.llama_cpp_engine:LlamaCppLLM", "model_path"),
    "vllm": EngineClass("llm", "serving.llm.vllm_engine:VLLMEngine", "model_dir"),
    "piper": EngineClass("tts", "serving.tts.piper_engine:PiperTTS", "model_path"),
    "espeak": EngineClass("tts", "serving.tts.espeak_engine:EspeakTTS", None),
    "chatterbox": EngineClass("tts", "serving.tts.chatterbox_engine:ChatterboxTTS", "model_path"),
}

_ENGINE_KEYS = {"engine", "model", "model_path", "options", "fallback", "deployment"}
_DEPLOYMENT_KEYS = {
    "num_replicas",
    "num_cpus",
    "num_gpus",
    "memory_mb",
    "autoscaling",
    "max_ongoing_requests",
    "env",
}
_TOP_KEYS = {"profile", "http", "ray", "timeouts", "engines"}


@dataclass(frozen=True)
class DeploymentSettings:
    num_replicas: int = 1
    num_cpus: float = 0.25
    num_gpus: float = 0.0
    memory_mb: int | None = None
    autoscaling: dict[str, Any] | None = None
    max_ongoing_requests: int = 8
    env: str | None = None  # name of a heavy env under ~/.cache/trunkline/envs/


@dataclass(frozen=True)
class EngineSettings:
    kind: Kind
    engine: str  # alias or module:Class, as written
    target: str  # module:Class
    path_arg: str | None
    model: str | None  # model-store name, resolved with models.resolve
    model_path: str | None  # operator-supplied path (gpu profile)
    options: dict[str, Any] = field(default_factory=dict)
    fallback: EngineSettings | None = None
    deployment: DeploymentSettings = field(default_factory=DeploymentSettings)


@dataclass(frozen=True)
class Timeouts:
    first_output_s: float = 60.0  # no first token/chunk/transcript by then -> 503
    total_s: float = 300.0


@dataclass(frozen=True)
class RaySettings:
    num_cpus: float = 2
    object_store_memory_mb: int = 128
    auth: Literal["token", "disabled"] = "token"


@dataclass(frozen=True)
class ServingConfig:
    profile: str
    host: str
    port: int
    engines: dict[Kind, EngineSettings]
    ray: RaySettings = field(default_factory=RaySettings)
    timeouts: Timeouts = field(default_factory=Timeouts)
    source: str = "<dict>"


# ---------------------------------------------------------------- loading


def profile_path(profile: str) -> Path:
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    return Path(str(resources.files("serving.config").joinpath(f"{profile}.yaml")))


def load_config(path: str | os.PathLike[str]) -> ServingConfig:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(raw, source=str(path))


def parse_config(raw: Any, *, source: str = "<dict>") -> ServingConfig:
    def fail(where: str, problem: str) -> ConfigError:
        return ConfigError(f"{source}: {where}: {problem}")

    if not isinstance(raw, Mapping):
        raise fail("top level", "must be a mapping")
    _no_unknown(raw, _TOP_KEYS, "top level", fail)

    http = _mapping(raw.get("http", {}), "http", fail)
    _no_unknown(http, {"host", "port"}, "http", fail)
    host = str(http.get("host", "127.0.0.1"))
    port = _number(http.get("port", 8000), "http.port", fail, int, 1, 65535)

    ray_raw = _mapping(raw.get("ray", {}), "ray", fail)
    _no_unknown(ray_raw, {"num_cpus", "object_store_memory_mb", "auth"}, "ray", fail)
    auth = ray_raw.get("auth", "token")
    if auth not in ("token", "disabled"):
        raise fail("ray.auth", f"must be 'token' or 'disabled', not {auth!r}")
    ray_settings = RaySettings(
        num_cpus=_number(ray_raw.get("num_cpus", 2), "ray.num_cpus", fail, float, 0.5, 4096),
        object_store_memory_mb=_number(
            ray_raw.get("object_store_memory_mb", 128),
            "ray.object_store_memory_mb",
            fail,
            int,
            78,  # Ray's own minimum object store size (75 MiB)
            1 << 20,
        ),
        auth=auth,
    )

    t_raw = _mapping(raw.get("timeouts", {}), "timeouts", fail)
    _no_unknown(t_raw, {"first_output_s", "total_s"}, "timeouts", fail)
    timeouts = Timeouts(
        first_output_s=_number(
            t_raw.get("first_output_s", 60.0), "timeouts.first_output_s", fail, float, 0.1, 3600
        ),
        total_s=_number(t_raw.get("total_s", 300.0), "timeouts.total_s", fail, float, 0.1, 86400),
    )

    engines_raw = _mapping(raw.get("engines"), "engines", fail)
    _no_unknown(engines_raw, set(KINDS), "engines", fail)
    if not engines_raw:
        raise fail("engines", "at least one of stt, llm, tts is required")
    engines = {
        kind: _engine_settings(
            engines_raw[kind], kind, f"engines.{kind}", fail, allow_fallback=True
        )
        for kind in KINDS
        if kind in engines_raw
    }
    return ServingConfig(
        profile=str(raw.get("profile", "custom")),
        host=host,
        port=port,
        engines=engines,
        ray=ray_settings,
        timeouts=timeouts,
        source=source,
    )


def _engine_settings(
    raw: Any, kind: Kind, where: str, fail: Callable[[str, str], ConfigError], allow_fallback: bool
) -> EngineSettings:
    raw = _mapping(raw, where, fail)
    _no_unknown(raw, _ENGINE_KEYS if allow_fallback else _ENGINE_KEYS - {"fallback"}, where, fail)
    name = raw.get("engine")
    if not isinstance(name, str) or not name:
        raise fail(f"{where}.engine", "missing (an alias or 'module:Class')")
    if name in ENGINE_ALIASES:
        spec = ENGINE_ALIASES[name]
        if spec.kind != kind:
            raise fail(f"{where}.engine", f"{name!r} is a {spec.kind} engine, not {kind}")
        target, path_arg = spec.target, spec.path_arg
    elif ":" in name:
        target, path_arg = name, "model_path"
    else:
        known = ", ".join(a for a, s in ENGINE_ALIASES.items() if s.kind == kind)
        raise fail(f"{where}.engine", f"unknown engine {name!r} (known {kind} engines: {known})")
    model, model_path = raw.get("model"), raw.get("model_path")
    if model is not None and model_path is not None:
        raise fail(where, "give either model (a model-store name) or model_path, not both")
    if path_arg is not None and model is None and model_path is None:
        raise fail(where, f"engine {name!r} needs a model (model-store name) or model_path")
    for key, value in (("model", model), ("model_path", model_path)):
        if value is not None and not (isinstance(value, str) and value):
            raise fail(f"{where}.{key}", "must be a non-empty string")
    options = _mapping(raw.get("options", {}), f"{where}.options", fail)
    fallback = None
    if raw.get("fallback") is not None:
        fallback = _engine_settings(
            raw["fallback"], kind, f"{where}.fallback", fail, allow_fallback=False
        )
    return EngineSettings(
        kind=kind,
        engine=name,
        target=target,
        path_arg=path_arg,
        model=model,
        model_path=os.path.expanduser(model_path) if model_path else None,
        options=dict(options),
        fallback=fallback,
        deployment=_deployment(raw.get("deployment", {}), f"{where}.deployment", fail),
    )


def _deployment(
    raw: Any, where: str, fail: Callable[[str, str], ConfigError]
) -> DeploymentSettings:
    raw = _mapping(raw, where, fail)
    _no_unknown(raw, _DEPLOYMENT_KEYS, where, fail)
    autoscaling = raw.get("autoscaling")
    if autoscaling is not None:
        autoscaling = dict(_mapping(autoscaling, f"{where}.autoscaling", fail))
        lo = autoscaling.get("min_replicas", 1)
        hi = autoscaling.get("max_replicas", lo)
        if not (isinstance(lo, int) and isinstance(hi, int) and 0 <= lo <= hi):
            raise fail(f"{where}.autoscaling", "needs integers 0 <= min_replicas <= max_replicas")
    env = raw.get("env")
    if env is not None and not (isinstance(env, str) and env.replace("-", "").isalnum()):
        raise fail(f"{where}.env", f"must be an env name like 'vllm', not {env!r}")
    memory = raw.get("memory_mb")
    return DeploymentSettings(
        num_replicas=_number(
            raw.get("num_replicas", 1), f"{where}.num_replicas", fail, int, 1, 1024
        ),
        num_cpus=_number(raw.get("num_cpus", 0.25), f"{where}.num_cpus", fail, float, 0, 1024),
        num_gpus=_number(raw.get("num_gpus", 0), f"{where}.num_gpus", fail, float, 0, 64),
        memory_mb=None
        if memory is None
        else _number(memory, f"{where}.memory_mb", fail, int, 1, 1 << 24),
        autoscaling=autoscaling,
        max_ongoing_requests=_number(
            raw.get("max_ongoing_requests", 8),
            f"{where}.max_ongoing_requests",
            fail,
            int,
            1,
            100000,
        ),
        env=env,
    )


def _mapping(value: Any, where: str, fail: Callable[[str, str], ConfigError]) -> Mapping[str, Any]:
    if value is None:
        raise fail(where, "missing")
    if not isinstance(value, Mapping):
        raise fail(where, f"must be a mapping, not {type(value).__name__}")
    return value


def _no_unknown(
    raw: Mapping[str, Any], allowed: set[str], where: str, fail: Callable[[str, str], ConfigError]
) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise fail(where, f"unknown key(s) {unknown} (allowed: {sorted(allowed)})")


def _number(value: Any, where: str, fail: Callable[[str, str], ConfigError], typ: type, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail(where, f"must be a number, not {value!r}")
    if typ is int and int(value) != value:
        raise fail(where, f"must be a whole number, not {value!r}")
    if not lo <= value <= hi:
        raise fail(where, f"must be between {lo} and {hi}, not {value!r}")
    return typ(value)


# ---------------------------------------------------------------- building engines


def model_label(settings: EngineSettings) -> str:
    """The model's name as /v1/models shows it."""
    if settings.model:
        return settings.model
    if settings.model_path:
        return Path(settings.model_path).name.removesuffix(".onnx").removesuffix(".gguf")
    return settings.engine


def resolve_model_path(settings: EngineSettings) -> Path | None:
    """The engine's local model path; ModelError (from models) names what is wrong."""
    if settings.model_path is not None:
        path = Path(settings.model_path)
        if not path.exists():
            raise EngineError(
                f"{settings.kind} engine {settings.engine!r}: model_path {path} does not exist"
            )
        return path
    if settings.model is None:
        return None
    import models  # the model store; imported late so config parsing needs no models

    return models.resolve(settings.model)


def import_engine_class(target: str) -> type:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise EngineError(f"cannot import engine {target!r}: {exc}") from exc


# Libraries that phone home unless told not to. onnxruntime 1.31 (Piper, VAD, Smart
# Turn) sends 1DS telemetry (a DNS lookup of mobile.events.data.microsoft.com seen
# under strace); the hub flags stop any hub lookup in libraries that could make one.
OFFLINE_ENV = {
    "ORT_DISABLE_TELEMETRY": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


def offline_environment() -> None:
    """Set OFFLINE_ENV in this process (children inherit it), before engines load."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def build_engine(settings: EngineSettings) -> STTEngine | LLMEngine | TTSEngine:
    """Construct one engine (blocking: loads the model). Call it off the event loop."""
    offline_environment()
    cls = import_engine_class(settings.target)
    kwargs = dict(settings.options)
    path = resolve_model_path(settings)
    if settings.path_arg is not None and path is not None:
        kwargs[settings.path_arg] = path
    engine = cls(**kwargs)
    if settings.fallback is not None:
        engine = FallbackTTS(engine, build_engine(settings.fallback))
    return engine


def build_engines(config: ServingConfig) -> dict[Kind, Any]:
    return {kind: build_engine(settings) for kind, settings in config.engines.items()}


class FallbackTTS:
    """A TTS engine backed by a second one (espeak-ng): it serves the voices the
    primary lacks, and takes over when the primary fails before producing audio,
    so a broken voice model never means silence on a call."""

    def __init__(self, primary: TTSEngine, fallback: TTSEngine) -> None:
        self.primary = primary
        self.fallback = fallback
        self.name = f"{primary.name}+{fallback.name}"

    def voices(self) -> list[str]:
        primary = self.primary.voices()
        return primary + [v for v in self.fallback.voices() if v not in primary]

    def synthesize(self, text: str, voice: str | None = None) -> AsyncIterator[AudioChunk]:
        if voice is not None and voice not in self.primary.voices():
            try:
                return self.fallback.synthesize(text, voice)
            except UnknownVoice:
                raise UnknownVoice(
                    f"unknown voice {voice!r} (for example: {self.voices()[:8]})"
                ) from None
        return self._primary_then_fallback(text, voice)

    async def _primary_then_fallback(
        self, text: str, voice: str | None
    ) -> AsyncIterator[AudioChunk]:
        produced = False
        try:
            async for chunk in self.primary.synthesize(text, voice):
                produced = True
                yield chunk
        except EngineError as exc:
            if produced or isinstance(exc, BadInput):
                raise
            # The primary failed before any audio: speak with the fallback instead.
            async for chunk in self.fallback.synthesize(text, None):
                yield chunk
