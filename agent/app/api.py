"""The agent's HTTP routes: `/healthz`, `/metrics`, and under /api the calls routes.

`agent_app(...)` builds them as a FastAPI app of their own; in-process (`--no-ray`)
the serving routes are mounted under it on the same port, so one port serves both,
and `/healthz` here means models AND the SIP endpoint are ready. `/healthz` and
`/metrics` are open; with a control plane everything under /api needs an API key.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse

from agent.app.calls_api import build_calls_router, call_view
from agent.metrics import METRICS, CallMetrics

__all__ = ["AGENT_ROUTES", "agent_app", "call_view"]

AGENT_ROUTES = (
    "GET /api/calls, GET /api/calls/{call_id}, GET /api/calls/{call_id}/recording, "
    "POST /api/calls (outbound), /api/agents|templates|goals|instructions|domains|voices, "
    "POST /api/agents/{id}/console, GET /metrics"
)


def agent_app(
    *,
    store: Any,
    live_sessions: Callable[[], dict[str, Any]],
    health: Callable[[], tuple[bool, dict[str, Any]]],
    metrics: CallMetrics = METRICS,
    control_plane: Any | None = None,
    voice_admin: Any | None = None,
    outbound: Any | None = None,
    live_registry: Any | None = None,
    recordings: Path | None = None,
    console_llm: Any | None = None,
    console_options: Any | None = None,
) -> FastAPI:
    """`live_sessions()`: SIP Call-ID -> CallSession; `health()`: (ready, details);
    `control_plane`: a ControlPlaneStore whose management routes (agents, templates,
    goals, instructions, domains; API-key auth) are mounted under /api, with the voice
    routes when `voice_admin` (a VoiceAdmin that clones on the TTS) is given too, and
    `POST /api/calls` when `outbound` (the outbound ticket caller) is. The calls routes
    need a read key when there is a control plane. `live_registry`: the live calls of
    every replica (agent.app.live_registry); `recordings`: the recordings directory;
    `console_llm` (an engine, or a function giving it once loaded): the text test console
    `POST /api/agents/{id}/console`, on `console_options` (the calls' SessionOptions)."""
    app = FastAPI(title="trunkline agent", version="0.1.0")
    if control_plane is not None:
        from agent.controlplane.api import build_router

        app.include_router(build_router(control_plane), prefix="/api")
        if voice_admin is not None:
            from agent.controlplane.voices_api import build_voices_router

            app.include_router(build_voices_router(control_plane, voice_admin), prefix="/api")
        if console_llm is not None:
            from agent.controlplane.console import build_console_router

            app.include_router(
                build_console_router(control_plane, console_llm, base_options=console_options),
                prefix="/api",
            )

    @app.get("/healthz", response_model=None)
    async def healthz() -> JSONResponse:
        ready, details = health()
        return JSONResponse(details, 200 if ready else 503)

    @app.get("/metrics", response_model=None)
    async def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    calls = build_calls_router(
        store,
        live_sessions,
        control_plane=control_plane,
        live_registry=live_registry,
        recordings=recordings,
    )
    app.include_router(calls, prefix="/api")
    if outbound is not None:
        # After the calls routes: GET /api/calls/{id} stays theirs.
        from agent.app.outbound_api import build_outbound_router

        app.include_router(build_outbound_router(outbound, control_plane), prefix="/api")
    return app
