"""The agent's HTTP routes: `/healthz`, `/metrics`, `GET /api/calls`, `GET /api/calls/{id}`.

`agent_app(...)` builds them as a FastAPI app of their own; in-process (`--no-ray`)
the serving routes are mounted under it on the same port, so one port serves both,
and `/healthz` here means models AND the SIP endpoint are ready.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Query, Response
from fastapi.responses import JSONResponse

from agent import records
from agent.app.record_sink import record_id, to_store_record
from agent.metrics import METRICS, CallMetrics

AGENT_ROUTES = "GET /api/calls, GET /api/calls/{call_id}, GET /metrics"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def call_view(record: records.CallRecord, *, live: bool = False) -> dict[str, Any]:
    """One call as the API returns it (see `trunkline call --json` for its consumer)."""
    meta = dict(record.metadata or {})
    transcript = meta.get("transcript")
    if transcript is None:  # a record written by something other than the agent
        transcript = [
            {"speaker": t.speaker, "text": t.heard_text or t.text, "interrupted": t.interrupted}
            for t in record.turns
        ]
    return {
        "call_id": meta.get("sip_call_id", record.call_id),
        "record_id": record.call_id,
        "live": live,
        "direction": record.direction,
        "caller": record.caller,
        "callee": record.callee,
        "agent_name": record.agent_name,
        "started_at": _iso(record.started_at),
        "ended_at": None if live else _iso(record.ended_at),
        "duration_s": meta.get("duration_s"),
        "end_reason": None if live else record.end_reason,
        "outcome": "in_progress" if live else record.outcome,
        "error": record.error,
        "transcript": transcript,
        "turns": meta.get("turns", []),
        "events": meta.get("events", []),
        "errors": meta.get("errors", []),
        "tool_calls": [
            {"turn_index": c.turn_index, "name": c.name, "ok": c.ok, "error": c.error}
            for c in record.tool_calls
        ],
    }


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind}}, status)


def agent_app(
    *,
    store: Any,
    live_sessions: Callable[[], dict[str, Any]],
    health: Callable[[], tuple[bool, dict[str, Any]]],
    metrics: CallMetrics = METRICS,
    control_plane: Any | None = None,
    voice_admin: Any | None = None,
) -> FastAPI:
    """`live_sessions()`: SIP Call-ID -> CallSession; `health()`: (ready, details);
    `control_plane`: a ControlPlaneStore whose management routes (agents, templates,
    goals, instructions, domains; API-key auth) are mounted under /api, with the voice
    routes when `voice_admin` (a VoiceAdmin that clones on the TTS) is given too."""
    app = FastAPI(title="trunkline agent", version="0.1.0")
    if control_plane is not None:
        from agent.controlplane.api import build_router

        app.include_router(build_router(control_plane), prefix="/api")
        if voice_admin is not None:
            from agent.controlplane.voices_api import build_voices_router

            app.include_router(build_voices_router(control_plane, voice_admin), prefix="/api")

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        ready, details = health()
        return JSONResponse(details, 200 if ready else 503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/api/calls")
    async def list_calls(
        limit: int = Query(50, ge=1, le=1000),
        offset: int = Query(0, ge=0),
        outcome: str | None = None,
        end_reason: str | None = None,
    ) -> JSONResponse:
        try:
            found = await store.list_calls(
                limit=limit, offset=offset, outcome=outcome, end_reason=end_reason
            )
        except records.InvalidQuery as exc:
            return _error(400, str(exc), "invalid_request_error")
        live = {record_id(k) for k in live_sessions()}
        calls = []
        for record in found:
            view = call_view(record, live=record.call_id in live)
            for key in ("transcript", "turns", "events", "errors", "tool_calls"):
                view.pop(key)
            calls.append(view)
        return JSONResponse({"calls": calls, "limit": limit, "offset": offset})

    @app.get("/api/calls/{call_id}")
    async def get_call(call_id: str) -> JSONResponse:
        session = live_sessions().get(call_id)
        if session is not None:  # still talking: the session's record so far
            return JSONResponse(call_view(to_store_record(session.record), live=True))
        record = await store.get_call(record_id(call_id))
        if record is None:
            return _error(404, f"no call with id {call_id!r}", "not_found")
        return JSONResponse(call_view(record))

    return app
