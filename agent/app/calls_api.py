"""`GET /calls`, `GET /calls/{call_id}`, `GET /calls/{call_id}/recording` (under /api).

Stored calls come from the call-record store; which of them are live, and live calls
of other replicas, from the live registry (every replica) plus this process's own
sessions. With a control plane the routes need an API key of read scope.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse

from agent import records
from agent.app.call_query import BadFilter, CallFilters, parse_filters
from agent.app.record_sink import record_id, to_store_record
from agent.session.recording import recording_file, recordings_dir

log = logging.getLogger(__name__)

_LIST_ONLY_DROPS = ("transcript", "turns", "events", "errors", "tool_calls", "workflow", "goals")
_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid API key"},
    403: {"description": "The API key lacks read scope"},
}
_BAD_FILTER: dict[int | str, dict[str, Any]] = {
    400: {"description": "A filter value the API cannot use (the message names it)"}
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such call"}}
_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"description": "The call-record database is unavailable"}
}
MAX_LIST_LIMIT = 1000  # as the store's
CallIdPath = Annotated[str, PathParam(min_length=1, max_length=1024, description="SIP Call-ID")]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def call_view(
    record: records.CallRecord, *, live: bool = False, recording_url: str | None = None
) -> dict[str, Any]:
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
        "agent_id": record.agent_id,
        "agent_name": record.agent_name,
        "started_at": _iso(record.started_at),
        "ended_at": None if live else _iso(record.ended_at),
        "duration_s": meta.get("duration_s"),
        "end_reason": None if live else record.end_reason,
        "outcome": "in_progress" if live else record.outcome,
        "error": record.error,
        "recording_url": recording_url,
        "transcript": transcript,
        "turns": meta.get("turns", []),
        "events": meta.get("events", []),
        "errors": meta.get("errors", []),
        "tool_calls": [
            {"turn_index": c.turn_index, "name": c.name, "ok": c.ok, "error": c.error}
            for c in record.tool_calls
        ],
        "workflow": meta.get("workflow"),
        "goals": meta.get("goals"),
    }


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind}}, status)


def _remote_record(live: Any) -> records.CallRecord:
    """A header for a live call of another replica that the store does not have (yet)."""
    return records.CallRecord(
        call_id=record_id(live.call_id),
        direction="outbound" if live.direction == "outbound" else "inbound",
        caller=live.caller,
        callee=live.callee,
        agent_name=live.agent_name,
        started_at=datetime.fromisoformat(live.started_at),
        metadata={"sip_call_id": live.call_id, "replica": live.replica},
    )


def build_calls_router(
    store: Any,
    live_sessions: Callable[[], dict[str, Any]],
    *,
    control_plane: Any | None = None,
    live_registry: Any | None = None,
    recordings: Path | None = None,
) -> APIRouter:
    """`live_sessions()`: SIP Call-ID -> this process's CallSession; `live_registry`: a
    LiveRegistry (agent.app.live_registry) for the live calls of every replica;
    `recordings`: where recordings are (default $TRUNKLINE_HOME/recordings)."""
    dependencies, errors = [], {}
    if control_plane is not None:
        from agent.controlplane.auth import require_scope

        dependencies.append(Depends(require_scope(control_plane, "read")))
        errors = _AUTH_ERRORS
    router = APIRouter(dependencies=dependencies, responses=errors, tags=["calls"])

    def recording_of(record: records.CallRecord) -> Path | None:
        folder = recordings or recordings_dir()
        candidates = [recording_file(record.call_id, folder)]
        if record.recording_path:  # only ever one of ours: never serve another path
            stored = Path(record.recording_path)
            if stored.parent.resolve() == folder.resolve():
                candidates.insert(0, stored)
        return next((p for p in candidates if p.is_file()), None)

    def url_of(record: records.CallRecord) -> str | None:
        if recording_of(record) is None:
            return None
        return f"/api/calls/{quote(record.call_id, safe='')}/recording"

    async def live_calls() -> dict[str, Any]:
        """SIP Call-ID -> a local CallSession or another replica's LiveCall."""
        found: dict[str, Any] = {}
        if live_registry is not None:
            try:
                found.update({c.call_id: c for c in await live_registry.calls()})
            except Exception as exc:  # an overview: this replica's calls still show
                log.warning("live registry unavailable: %s", exc)
        found.update(live_sessions())
        return found

    def live_view(call: Any) -> dict[str, Any]:
        record = getattr(call, "record", None)
        if record is not None:  # ours: the session's record so far
            stored = to_store_record(record)
            return call_view(stored, live=True, recording_url=None)
        return call_view(_remote_record(call), live=True)

    def summary(view: dict[str, Any]) -> dict[str, Any]:
        for key in _LIST_ONLY_DROPS:
            view.pop(key, None)
        return view

    async def list_live(filters: CallFilters, limit: int, offset: int) -> JSONResponse:
        views = [live_view(c) for c in (await live_calls()).values()]
        views = [v for v in views if filters.matches(v)]
        views.sort(key=lambda v: (v["started_at"], v["record_id"]), reverse=True)
        page = [summary(v) for v in views[offset : offset + limit]]
        return JSONResponse({"calls": page, "limit": limit, "offset": offset})

    @router.get("/calls", response_model=None, responses=_BAD_FILTER | _UNAVAILABLE)
    async def list_calls(
        limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 50,
        offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
        agent: Annotated[str | None, Query(description="Agent id or name")] = None,
        direction: Annotated[str | None, Query(description="inbound or outbound")] = None,
        outcome: str | None = None,
        end_reason: str | None = None,
        caller: Annotated[str | None, Query(description="Part of the caller URI")] = None,
        since: Annotated[str | None, Query(description="ISO 8601; started at or after")] = None,
        until: Annotated[str | None, Query(description="ISO 8601; started before")] = None,
        live: Annotated[str | None, Query(description="true: live calls only; false: ended")] = (
            None
        ),
    ) -> JSONResponse:
        """Calls, newest first; live ones (on any replica) marked `live`."""
        try:
            filters = parse_filters(
                agent=agent,
                direction=direction,
                outcome=outcome,
                end_reason=end_reason,
                caller=caller,
                since=since,
                until=until,
                live=live,
            )
        except BadFilter as exc:
            return _error(400, str(exc), "invalid_request_error")
        if filters.live:
            return await list_live(filters, limit, offset)
        live_ids = {record_id(k) for k in await live_calls()}
        try:
            found = await store.list_calls(
                limit=limit,
                offset=offset,
                exclude_ids=live_ids if filters.live is False else (),
                **filters.store_kwargs(),
            )
        except records.InvalidQuery as exc:
            return _error(400, str(exc), "invalid_request_error")
        except Exception as exc:
            log.warning("listing calls failed: %s", exc)
            return _error(503, "the call-record database is unavailable", "unavailable")
        calls = [summary(call_view(r, live=r.call_id in live_ids)) for r in found]
        return JSONResponse({"calls": calls, "limit": limit, "offset": offset})

    @router.get("/calls/{call_id}", response_model=None, responses=_NOT_FOUND | _UNAVAILABLE)
    async def get_call(call_id: CallIdPath) -> JSONResponse:
        """One call: transcript, per-turn trace, tool calls, events, errors, workflow, goals."""
        session = live_sessions().get(call_id)
        if session is not None:  # still talking here: the session's record so far
            return JSONResponse(live_view(session))
        try:
            record = await store.get_call(record_id(call_id))
        except Exception as exc:
            log.warning("reading call %s failed: %s", call_id, exc)
            return _error(503, "the call-record database is unavailable", "unavailable")
        live = (await live_calls()).get(call_id)
        if record is None:
            if live is not None:  # on another replica, not stored yet
                return JSONResponse(live_view(live))
            return _error(404, f"no call with id {call_id!r}", "not_found")
        live_now = live is not None
        return JSONResponse(
            call_view(record, live=live_now, recording_url=None if live_now else url_of(record))
        )

    @router.get(
        "/calls/{call_id}/recording",
        response_class=FileResponse,
        responses={
            200: {"content": {"audio/wav": {}}, "description": "Stereo WAV: caller L, agent R"},
            **_NOT_FOUND,
            **_UNAVAILABLE,
        },
    )
    async def get_recording(call_id: CallIdPath) -> Any:
        """The call's recording, once the call has ended."""
        try:
            record = await store.get_call(record_id(call_id))
        except Exception as exc:
            log.warning("reading call %s failed: %s", call_id, exc)
            return _error(503, "the call-record database is unavailable", "unavailable")
        if record is None:
            return _error(404, f"no call with id {call_id!r}", "not_found")
        path = recording_of(record)
        if path is None:
            live = await live_calls()
            if call_id in live or record.call_id in {record_id(k) for k in live}:
                message = f"call {call_id!r} is still in progress; it is saved when it ends"
            else:
                message = f"call {call_id!r} has no recording"
            return _error(404, message, "not_found")
        return FileResponse(path, media_type="audio/wav", filename=f"{record.call_id}.wav")

    return router
