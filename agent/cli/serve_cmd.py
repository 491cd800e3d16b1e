"""`trunkline serve`: the model servers, their HTTP routes, and the agent answering SIP.

With Ray (default) the engines run as Ray Serve deployments behind Serve's HTTP
proxy on `--port`; the agent runs in this process, reaching them through deployment
handles, and serves its own routes (`/healthz`, `/metrics`, `/api/calls`) on
`--agent-port` (default: `--port` + 1), since Serve's proxy owns `--port`.
With `--no-ray` the same engines run in this process and one port serves both the
OpenAI-style routes and the agent's. Either way everything listens on loopback by
default, and `/healthz` turns 200 once the models AND the SIP endpoint are ready.

Ctrl-C / SIGTERM: calls are hung up, their records saved, then the servers stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from typing import Any

import click

from serving.factory import (
    ConfigError,
    ServingConfig,
    build_engines,
    load_config,
    model_label,
    profile_path,
)

ROUTES = (
    "POST /v1/chat/completions, POST /v1/audio/transcriptions, POST /v1/audio/speech, "
    "GET /v1/audio/voices, GET /v1/models, GET /healthz"
)
log = logging.getLogger(__name__)


def _config(config_file: str | None, profile: str) -> ServingConfig:
    try:
        return load_config(config_file or profile_path(profile))
    except ConfigError as exc:
        raise click.ClickException(f"bad serving config: {exc}") from None


def _stack_config(config_file: str | None, profile: str) -> tuple[ServingConfig, Any]:
    from agent.app.settings import load_stack_config

    try:
        return load_stack_config(config_file or profile_path(profile))
    except ConfigError as exc:
        raise click.ClickException(f"bad config: {exc}") from None


def _describe(config: ServingConfig) -> str:
    return ", ".join(
        f"{kind}={s.engine}({s.model or s.model_path or '-'})" for kind, s in config.engines.items()
    )


async def load_engines(state: Any, config: ServingConfig) -> None:
    """Build the engines off the event loop and publish them on `state` (or the error)."""
    from serving.http_app import Engines

    try:
        engines = await asyncio.to_thread(build_engines, config)
    except Exception as exc:  # ModelError, EngineError, an engine's own import error
        state.load_error = f"{type(exc).__name__}: {exc}"
        raise
    state.engines = Engines(**engines)


def _serving_state(config: ServingConfig) -> Any:
    from serving.http_app import ServingState

    return ServingState(
        model_names={k: model_label(s) for k, s in config.engines.items()},
        first_output_timeout_s=config.timeouts.first_output_s,
        total_timeout_s=config.timeouts.total_s,
    )


def _uvicorn(app: Any, host: str, port: int) -> Any:
    import uvicorn

    return uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    )


def make_local_server(config: ServingConfig, host: str, port: int) -> tuple[Any, Any]:
    """(uvicorn.Server, ServingState) for the in-process model routes; models load on start."""
    from serving.http_app import build_app

    state = _serving_state(config)
    return _uvicorn(build_app(state), host, port), state


# ---------------------------------------------------------------- the agent


class _Stack:
    """What the agent's routes look at: the agent (once started) and the models' state."""

    def __init__(self, models_ready: Any) -> None:
        self.agent: Any = None
        self.models_ready = models_ready  # () -> (ready, detail)
        self.store: Any = None
        self.control_plane: Any = None  # management API store (agents, keys, ...)
        self.agent_required = True  # False: a models-only server (no SIP)
        self.ws_bind: tuple[str, int] | None = None  # --ws: also answer WebSocket calls
        self.ws_endpoint: Any = None
        self.caller: Any = None  # outbound ticket calls (TicketCaller), once the agent runs
        self.live: Any = None  # live calls of every replica (agent.app.live_registry)

    def live_sessions(self) -> dict[str, Any]:
        return self.agent.sessions if self.agent is not None else {}

    def health(self) -> tuple[bool, dict[str, Any]]:
        models_ok, models_detail = self.models_ready()
        sip_ok = self.agent is not None and self.agent.ready.is_set()
        sip = self.agent.sip_uri if sip_ok else "starting"
        if not self.agent_required:
            sip_ok, sip = True, "off"
        status = "ok" if models_ok and sip_ok else "loading"
        if models_detail.startswith("failed"):
            status = "failed"
        return models_ok and sip_ok, {"status": status, "models": models_detail, "sip": sip}


def _agent_app(stack: _Stack, models_url: str) -> Any:
    """The agent's routes; voice clones go to the TTS through the model routes at `models_url`."""
    from agent.app.api import agent_app
    from agent.app.live_registry import live_registry_from_env
    from agent.controlplane.db import ControlPlaneStore
    from agent.controlplane.voice_admin import HttpVoiceAdmin
    from agent.records import CallRecordStore

    stack.store = CallRecordStore()
    stack.control_plane = ControlPlaneStore()
    stack.live = live_registry_from_env()  # Redis at $REDIS_URL, else this process only
    return agent_app(
        store=stack.store,
        live_sessions=stack.live_sessions,
        health=stack.health,
        control_plane=stack.control_plane,
        voice_admin=HttpVoiceAdmin(models_url),
        outbound=lambda: stack.caller,  # POST /api/calls; 503 until the agent started
        live_registry=stack.live,
        # The text test console: the same LLM and options as calls, once the agent runs.
        console_llm=lambda: stack.agent.engines.llm if stack.agent is not None else None,
        console_options=lambda: stack.agent.settings.session if stack.agent is not None else None,
    )


def _stop_on_signals(stop: asyncio.Event) -> None:
    # After uvicorn/Ray installed theirs: ours hang calls up and save records first.
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def _start_agent(stack: _Stack, engines: Any, settings: Any) -> bool:
    from agent.app.server import AgentServer
    from telephony.sip_endpoint import SipError

    stack.agent = AgentServer(
        engines,
        settings,
        store=stack.store,
        control_plane=stack.control_plane,
        live_registry=stack.live,
    )
    from agent.controlplane.local_key import ensure_local_key

    # The CLI on this machine (call, dial, simulate) authenticates with this key file;
    # written before /healthz turns 200, so a client that waited for ready finds it.
    await ensure_local_key(stack.control_plane)
    try:
        await stack.agent.start()
    except SipError as exc:
        click.echo(f"error: {exc}", err=True)
        return False
    from agent.app.outbound import TicketCaller

    stack.caller = TicketCaller(settings.stores, stack.agent)
    stack.agent.inbound_directors = lambda: stack.caller.inbound_director(stack.agent.engines.llm)
    if stack.ws_bind is not None:
        return await _start_ws(stack)
    return True


async def _start_ws(stack: _Stack) -> bool:
    """The WebSocket media transport, answered by the same handler as SIP calls."""
    from telephony.websocket import WebSocketEndpoint

    assert stack.ws_bind is not None
    host, port = stack.ws_bind
    endpoint = WebSocketEndpoint(host, port)
    try:
        # AgentServer's SIP handler: answers, runs a session, persists the record
        await endpoint.start(stack.agent._on_incoming)
    except OSError as exc:
        click.echo(f"error: cannot listen for WebSocket calls on {host}:{port}: {exc}", err=True)
        return False
    stack.ws_endpoint = endpoint
    return True


def _how_to_call(stack: _Stack, http_base: str, started: float) -> None:
    from agent.controlplane.local_key import key_path

    uri = stack.agent.sip_uri
    to = "" if uri == "sip:agent@127.0.0.1:5060" else f" --to {uri}"
    click.echo(f"ready in {time.monotonic() - started:.1f} s: {http_base}/healthz is 200")
    click.echo(f"agent answering SIP (UDP) at {uri}")
    click.echo(f"  try it:    trunkline call --wav question.wav --record reply.wav{to}")
    click.echo(f"  softphone: dial {uri} (no registration needed)")
    if stack.ws_endpoint is not None:
        ws = stack.ws_endpoint
        click.echo(f"agent answering WebSocket calls at ws://{ws.host}:{ws.port}/")
    click.echo(f"  calls:     {http_base}/api/calls   metrics: {http_base}/metrics")
    click.echo(
        "  outbound:  trunkline dial --ticket T1 --wait   (with `trunkline store-sim` running)"
    )
    click.echo(f"  API key:   {key_path()} (admin; the CLI on this machine uses it)")


async def _wait_for(stop: asyncio.Event, *others: asyncio.Task[Any]) -> None:
    waiter = asyncio.ensure_future(stop.wait())
    await asyncio.wait({waiter, *others}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()


async def _shutdown(stack: _Stack, server: Any, serving: asyncio.Task[Any]) -> None:
    click.echo("stopping: hanging up calls and saving their records")
    if stack.agent is not None:
        try:
            await stack.agent.stop()
        except Exception:
            log.exception("agent shutdown failed")
        if stack.caller is not None:  # after the calls ended: their tickets are updated
            with contextlib.suppress(Exception):
                await stack.caller.close()
        if stack.ws_endpoint is not None:  # after the agent hung its calls up
            with contextlib.suppress(Exception):
                await stack.ws_endpoint.stop()
    elif stack.store is not None:
        await stack.store.close()
    if stack.control_plane is not None:
        with contextlib.suppress(Exception):
            await stack.control_plane.close()
    server.should_exit = True
    with contextlib.suppress(Exception):
        await asyncio.wait_for(serving, 10)


def _close_engines(engines: Any) -> None:
    for engine in engines:
        close = getattr(engine, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()


async def _serve_local(
    config: ServingConfig,
    settings: Any,
    host: str,
    port: int,
    ws_bind: tuple[str, int] | None = None,
) -> int:
    from agent.session import Engines
    from serving.http_app import build_app

    state = _serving_state(config)

    def models_ready() -> tuple[bool, str]:
        if state.engines is not None:
            return True, "ok"
        return False, f"failed: {state.load_error}" if state.load_error else "loading"

    stack = _Stack(models_ready)
    stack.ws_bind = ws_bind
    app = _agent_app(stack, f"http://{host}:{port}")  # model routes share the port
    app.mount("/", build_app(state))  # after the agent's routes: their /healthz wins
    server = _uvicorn(app, host, port)
    serving = asyncio.create_task(server.serve())
    for _ in range(200):  # uvicorn binds within milliseconds; give it 10 s at most
        if server.started or serving.done():
            break
        await asyncio.sleep(0.05)
    if not server.started:  # port taken and the like: uvicorn has logged why
        server.should_exit = True
        return 1
    stop = asyncio.Event()
    _stop_on_signals(stop)
    base = f"http://{host}:{port}"
    click.echo(f"{base} listening (in-process); loading {_describe(config)}")
    started = time.monotonic()
    loading = asyncio.create_task(load_engines(state, config))
    await _wait_for(stop, loading, serving)
    if not loading.done():  # stopped while loading: the load thread finishes on its own
        loading.cancel()
        await _shutdown(stack, server, serving)
        return 0
    if loading.exception() is not None:
        click.echo(f"error: engines failed to load: {state.load_error}", err=True)
        await _shutdown(stack, server, serving)
        return 1
    engines = state.engines
    session_engines = Engines(engines.stt, engines.llm, engines.tts)
    missing = [k for k in ("stt", "llm", "tts") if getattr(engines, k) is None]
    if missing:  # a models-only server (say, TTS alone): serve the routes, no agent
        stack.agent_required = False
        click.echo(f"ready in {time.monotonic() - started:.1f} s: {base}/healthz is 200")
        click.echo(f"no agent (no SIP): it needs stt, llm and tts engines; missing {missing}")
        click.echo(f"routes: {ROUTES}")
    elif await _start_agent(stack, session_engines, settings):
        _how_to_call(stack, base, started)
        click.echo(f"routes: {ROUTES}, {_agent_routes()}")
    else:
        stack.agent = None
        await _shutdown(stack, server, serving)
        return 1
    await _wait_for(stop, serving)
    await _shutdown(stack, server, serving)
    await asyncio.to_thread(_close_engines, session_engines)
    return 0


def _agent_routes() -> str:
    from agent.app.api import AGENT_ROUTES

    return AGENT_ROUTES


async def _run_agent_on_ray(
    config: ServingConfig,
    settings: Any,
    agent_port: int,
    ws_bind: tuple[str, int] | None = None,
    models_url: str = "",
    *,
    remote: bool = False,
) -> int:
    """The agent on models served elsewhere: this process's Ray Serve deployments (through
    handles), or with `remote` a model server's HTTP routes at `models_url` (scale-out: agent
    replicas in front of a shared RayService)."""
    from agent.session import Engines
    from serving.client import http_client, ray_client

    if remote:
        try:
            client = await http_client(models_url)
        except Exception as exc:
            click.echo(f"error: no model server at {models_url}: {exc}", err=True)
            return 1
    else:
        client = await ray_client()
    if client.stt is None or client.llm is None or client.tts is None:
        click.echo("error: the agent needs stt, llm and tts deployments", err=True)
        return 1
    stack = _Stack(lambda: (True, "ok"))  # Serve returned: the deployments are up
    stack.ws_bind = ws_bind
    server = _uvicorn(_agent_app(stack, models_url), config.host, agent_port)
    serving = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started or serving.done():
            break
        await asyncio.sleep(0.05)
    if not server.started:
        server.should_exit = True
        return 1
    stop = asyncio.Event()
    _stop_on_signals(stop)
    started = time.monotonic()
    if not await _start_agent(stack, Engines(client.stt, client.llm, client.tts), settings):
        stack.agent = None
        await _shutdown(stack, server, serving)
        return 1
    _how_to_call(stack, f"http://{config.host}:{agent_port}", started)
    click.echo(f"agent routes on port {agent_port}: {_agent_routes()}, GET /healthz")
    await _wait_for(stop, serving)
    await _shutdown(stack, server, serving)
    await client.aclose()
    return 0


def _serve_ray(
    config: ServingConfig,
    settings: Any,
    port: int,
    agent_port: int,
    ws_bind: tuple[str, int] | None = None,
) -> int:
    from serving import ray_app

    click.echo(f"starting Ray Serve on 127.0.0.1; loading {_describe(config)}")
    started = time.monotonic()
    try:
        ray_app.run(config, port=port)
    except Exception as exc:
        click.echo(f"error: Ray Serve app failed to start: {exc}", err=True)
        ray_app.shutdown()
        return 1
    click.echo(
        f"http://{config.host}:{port} listening (Ray Serve) and ready in "
        f"{time.monotonic() - started:.1f} s: /healthz is 200"
    )
    click.echo(f"routes: {ROUTES}")
    click.echo(f"Ray: {ray_app.describe_cluster()}")
    try:
        models_url = f"http://{config.host}:{port}"
        return asyncio.run(_run_agent_on_ray(config, settings, agent_port, ws_bind, models_url))
    finally:
        click.echo("stopping Ray Serve")
        ray_app.shutdown()


@click.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Config YAML: serving sections plus optional `sip:` and `agent:` "
    "(default: the profile's built-in config).",
)
@click.option(
    "--profile",
    type=click.Choice(["cpu", "gpu"]),
    default="cpu",
    show_default=True,
    help="Built-in config: cpu = embedded models, gpu = vLLM + Chatterbox + Whisper large.",
)
@click.option("--no-ray", is_flag=True, help="Run the engines in this process (no Ray).")
@click.option(
    "--host", default=None, help="HTTP listen address (default: from the config, 127.0.0.1)."
)
@click.option("--port", type=int, default=None, help="HTTP port (default: from the config).")
@click.option(
    "--agent-port",
    type=int,
    default=None,
    help="With Ray: the agent's HTTP port (/healthz, /metrics, /api/calls); default --port + 1.",
)
@click.option("--sip", "sip_bind", default=None, help="SIP listen HOST:PORT [127.0.0.1:5060].")
@click.option("--rtp-ports", default=None, help="RTP port range LOW-HIGH [20000-30000].")
@click.option(
    "--advertise",
    default=None,
    help="Host peers use to reach our SIP/RTP (NAT, or when --sip binds 0.0.0.0).",
)
@click.option(
    "--ws",
    "ws_bind",
    default=None,
    help="Also answer WebSocket media calls on HOST:PORT (load tests, browser console).",
)
@click.option(
    "--models-url",
    default=None,
    help="Use the models of a running model server at URL (e.g. a RayService) instead of "
    "starting them; the agent's routes then listen on --port.",
)
def serve(
    config_file: str | None,
    profile: str,
    no_ray: bool,
    host: str | None,
    port: int | None,
    agent_port: int | None,
    sip_bind: str | None,
    rtp_ports: str | None,
    advertise: str | None,
    ws_bind: str | None,
    models_url: str | None,
) -> None:
    """Start the models, the agent answering SIP calls, and the HTTP routes."""
    import dataclasses

    from agent.app.settings import parse_host_port, parse_port_range

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config, settings = _stack_config(config_file, profile)
    try:
        sip = settings.sip
        if sip_bind is not None:
            sip = dataclasses.replace(sip, bind=parse_host_port(sip_bind))
        if rtp_ports is not None:
            sip = dataclasses.replace(sip, rtp_ports=parse_port_range(rtp_ports))
        if advertise is not None:
            sip = dataclasses.replace(sip, advertise=advertise)
        ws = parse_host_port(ws_bind) if ws_bind is not None else None
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None
    settings = dataclasses.replace(settings, sip=sip)
    if host is not None:
        config = dataclasses.replace(config, host=host)
    port = port if port is not None else config.port
    if models_url is not None:
        code = asyncio.run(
            _run_agent_on_ray(config, settings, port, ws, models_url.rstrip("/"), remote=True)
        )
    elif no_ray:
        code = asyncio.run(_serve_local(config, settings, config.host, port, ws))
    else:
        code = _serve_ray(config, settings, port, agent_port or port + 1, ws)
    sys.exit(code)
