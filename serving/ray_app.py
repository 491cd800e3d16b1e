"""The Ray Serve application: one deployment per model kind plus the HTTP ingress.

Each engine deployment builds its engine from the config inside its replica (in
its own Python env where torch pins conflict); the ingress serves the same routes
as the in-process app (serving.http_app), reaching the engines through deployment
handles, streaming token by token and chunk by chunk.

Streaming latency: Serve core forwards every item a deployment yields as soon as
it is yielded; the 50 ms stream batching of research/peers.md belongs to Ray Serve
LLM's LLMServer (`experimental_configs.stream_batching_interval_ms`), which we do
not use, so there is no interval to set and nothing is held back.

Outbound traffic: see `start_ray` for the settings that keep Ray on loopback and
silent (no usage report, no cloud-metadata probe).
"""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.base import BadInput, UnknownVoice
from serving.factory import (
    OFFLINE_ENV,
    DeploymentSettings,
    EngineSettings,
    Kind,
    RaySettings,
    ServingConfig,
    build_engine,
    load_config,
    model_label,
    offline_environment,
    profile_path,
)

APP_NAME = "trunkline"
REPO_ROOT = Path(__file__).resolve().parent.parent
ENVS_DIR = Path(os.environ.get("TRUNKLINE_ENVS") or Path.home() / ".cache" / "trunkline" / "envs")
BOOTSTRAP_CONFIG = Path.home() / "ray_bootstrap_config.yaml"
RAY_TOKEN_FILE = Path.home() / ".ray" / "auth_token"  # where Ray 2.60 looks by default
# Per-request INFO lines and access logs would flood the log on a busy box.
SERVE_LOGGING = {"enable_access_log": False, "log_level": "WARNING"}
_BOOTSTRAP_TEXT = """\
# Written by trunkline (serving/ray_app.py). Ray's dashboard usage module probes
# cloud metadata endpoints (169.254.169.254, metadata.google.internal) unless this
# file exists (ray/_common/usage/usage_lib.py, get_cluster_config_to_report).
# An on-prem install makes no such attempt. Safe to keep; replace it with a real
# cluster-launcher config if you use `ray up`.
provider:
  type: local
"""


def quiet_ray_environment(settings: RaySettings) -> None:
    """Environment for every Ray process started from here (children inherit it)."""
    offline_environment()  # inherited by every replica
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # no usage reports, no prompt
    # Single-node mode: Ray then takes 127.0.0.1 as the node address instead of
    # finding "the" IP with a UDP connect to 8.8.8.8 and moving all its internal
    # traffic onto eth0 (`_node_ip_address="127.0.0.1"` alone is turned back into
    # that IP by services.resolve_ip_for_localhost). The name is Ray's; on Linux
    # it only also stops `ray start` from joining other nodes.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    if "ray" in sys.modules:  # read at import: Ray was imported before us
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    if settings.auth == "disabled":
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    else:
        # Token auth (Ray's default for a new local cluster): Ray listens on loopback
        # only, but any local user could otherwise reach the GCS and run code. Ray
        # writes its token world-readable, so we write it first, owner-only.
        _private_token_file()
    if not BOOTSTRAP_CONFIG.exists():
        BOOTSTRAP_CONFIG.write_text(_BOOTSTRAP_TEXT)


def _private_token_file() -> None:
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return  # the operator manages the token
    token = RAY_TOKEN_FILE
    if not token.exists():
        token.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    elif token.stat().st_uid == os.getuid():
        token.chmod(0o600)


def start_ray(settings: RaySettings) -> None:
    quiet_ray_environment(settings)  # before Ray is imported: it reads some at import
    import ray

    ray.init(
        address="local",  # always a fresh private cluster, never someone else's
        _node_ip_address="127.0.0.1",  # with single-node mode (above): all on loopback
        include_dashboard=False,
        dashboard_host="127.0.0.1",
        num_cpus=settings.num_cpus,
        object_store_memory=settings.object_store_memory_mb * 1024 * 1024,
        namespace=APP_NAME,
        configure_logging=True,
        logging_level="WARNING",
    )


def start_serve(host: str, port: int) -> None:
    from ray import serve

    serve.start(
        proxy_location="HeadOnly",
        http_options={"host": host, "port": port},
        logging_config=SERVE_LOGGING,
    )


# ---------------------------------------------------------------- deployments


@dataclass(frozen=True)
class Refusal:
    """A deployment's answer to a bad request. Returned (or yielded) instead of
    raised, so Ray does not log every bad upload as a replica error with a traceback;
    the handle adapters in serving.client turn it back into the engine's exception."""

    message: str
    unknown_voice: bool = False

    @classmethod
    def of(cls, exc: BadInput) -> Refusal:
        return cls(str(exc), isinstance(exc, UnknownVoice))

    def error(self) -> BadInput:
        return (UnknownVoice if self.unknown_voice else BadInput)(self.message)


def _deployment_classes() -> dict[str, Any]:
    """Built on first use so that importing this module needs no Ray."""
    global _CLASSES
    if _CLASSES:
        return _CLASSES
    from ray import serve

    class _EngineHost:
        def __init__(self, settings: EngineSettings) -> None:
            # Blocking model load; Serve runs a sync constructor off the replica's loop.
            self.engine = build_engine(settings)

        def describe(self) -> dict[str, Any]:
            voices = self.engine.voices() if hasattr(self.engine, "voices") else []
            return {"name": self.engine.name, "voices": voices}

    # A bad request is answered with a Refusal value, not raised (see serving.client).
    @serve.deployment(name="stt")
    class STTDeployment(_EngineHost):
        async def transcribe(self, pcm: Any, sample_rate: int) -> Any:
            try:
                return await self.engine.transcribe(pcm, sample_rate)
            except BadInput as exc:
                return Refusal.of(exc)

    @serve.deployment(name="llm")
    class LLMDeployment(_EngineHost):
        async def chat(self, messages: list[dict[str, Any]], **options: Any) -> Any:
            try:
                async for delta in self.engine.chat(messages, **options):
                    yield delta
            except BadInput as exc:
                yield Refusal.of(exc)

        async def warm(
            self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
        ) -> Any:
            """Prefill a stable prompt prefix (engines without a prefix cache: no-op, 0)."""
            warm = getattr(self.engine, "warm", None)
            if not callable(warm):
                return 0
            try:
                return await warm(messages, tools)
            except BadInput as exc:
                return Refusal.of(exc)

    @serve.deployment(name="tts")
    class TTSDeployment(_EngineHost):
        async def synthesize(self, text: str, voice: str | None = None) -> Any:
            try:
                async for chunk in self.engine.synthesize(text, voice):
                    yield chunk
            except BadInput as exc:
                yield Refusal.of(exc)

    @serve.deployment(name="ingress")
    @serve.ingress()
    class Ingress:
        async def __init__(
            self, stt: Any, llm: Any, tts: Any, model_names: dict[str, str], timeouts: Any
        ) -> None:
            from serving.client import client_from_handles
            from serving.http_app import Engines, ServingState

            client = await client_from_handles(stt, llm, tts)
            self.state = ServingState(
                engines=Engines(stt=client.stt, llm=client.llm, tts=client.tts),
                model_names=model_names,
                first_output_timeout_s=timeouts.first_output_s,
                total_timeout_s=timeouts.total_s,
            )

        def __serve_build_asgi_app__(self) -> Any:
            from serving.http_app import build_app

            return build_app(self.state)

    _CLASSES.update(stt=STTDeployment, llm=LLMDeployment, tts=TTSDeployment, ingress=Ingress)
    return _CLASSES


_CLASSES: dict[str, Any] = {}


def runtime_env(deployment: DeploymentSettings) -> dict[str, Any] | None:
    """A heavy engine runs on the interpreter of its own env (own torch pins)."""
    if deployment.env is None:
        return None
    python = ENVS_DIR / deployment.env / "bin" / "python"
    return {
        "py_executable": str(python),
        "env_vars": {"PYTHONPATH": str(REPO_ROOT), "RAY_USAGE_STATS_ENABLED": "0", **OFFLINE_ENV},
    }


def deployment_options(settings: DeploymentSettings) -> dict[str, Any]:
    actor: dict[str, Any] = {"num_cpus": settings.num_cpus, "num_gpus": settings.num_gpus}
    if settings.memory_mb is not None:
        actor["memory"] = settings.memory_mb * 1024 * 1024
    env = runtime_env(settings)
    if env is not None:
        actor["runtime_env"] = env
    options: dict[str, Any] = {
        "ray_actor_options": actor,
        "max_ongoing_requests": settings.max_ongoing_requests,
    }
    if settings.autoscaling is not None:
        options["autoscaling_config"] = settings.autoscaling
    else:
        options["num_replicas"] = settings.num_replicas
    return options


def build_application(config: ServingConfig) -> Any:
    """The bound Serve application (engine deployments + ingress) for a config."""
    classes = _deployment_classes()
    bound: dict[Kind, Any] = {}
    for kind, settings in config.engines.items():
        bound[kind] = (
            classes[kind].options(**deployment_options(settings.deployment)).bind(settings)
        )
    names = {kind: model_label(s) for kind, s in config.engines.items()}
    ingress = classes["ingress"].options(ray_actor_options={"num_cpus": 0.1}, num_replicas=1)
    return ingress.bind(
        bound.get("stt"), bound.get("llm"), bound.get("tts"), names, config.timeouts
    )


def app_builder(args: dict[str, str]) -> Any:
    """For `serve run` / `serve deploy`: import_path serving.ray_app:app_builder with
    args {config: FILE} or {profile: cpu|gpu}."""
    path = args.get("config") or profile_path(args.get("profile", "cpu"))
    return build_application(load_config(path))


def run(config: ServingConfig, *, port: int | None = None) -> None:
    """Start Ray (loopback, quiet), Serve and the app; returns once it is serving."""
    from ray import serve

    start_ray(config.ray)
    start_serve(config.host, port if port is not None else config.port)
    serve.run(
        build_application(config), name=APP_NAME, route_prefix="/", logging_config=SERVE_LOGGING
    )


def describe_cluster() -> str:
    """One line for the operator: where Ray itself listens (all loopback)."""
    import ray

    context = ray.get_runtime_context()
    return (
        f"GCS {context.gcs_address}, dashboard off, usage stats off, "
        f"auth {os.environ.get('RAY_AUTH_MODE', 'token')}"
    )


def shutdown() -> None:
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()
