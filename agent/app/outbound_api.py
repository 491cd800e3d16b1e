"""`POST /api/calls`: start Maya's outbound call for a ticket (admin API key).

    POST /api/calls {"ticket_id": "T1"}
    202 {"call_id": "<SIP Call-ID>", "ticket_id": "T1", "to": "sip:store1042@...",
         "workflow": "KBA3813"}
    404 unknown ticket, 409 ticket closed (or a call for it under way), 502 store systems
    unreachable, 503 agent not ready, 504 the store's phone did not answer.

It answers once the store picked up (the Call-ID exists from then on); follow the call
with GET /api/calls/{call_id}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from agent.app.outbound import AgentNotReady, OutboundError, TicketCaller


class TicketCallRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ticket_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind}}, status)


_KINDS = {404: "not_found", 409: "conflict", 502: "upstream_error", 503: "unavailable"}


def build_outbound_router(
    caller: TicketCaller | Callable[[], TicketCaller | None] | None,
    control_plane: Any | None,
) -> APIRouter:
    """`caller`: the TicketCaller, or a function giving it (None until the agent started).
    With a control plane the route needs an admin key."""
    dependencies = []
    if control_plane is not None:
        from agent.controlplane.auth import require_scope

        dependencies = [Depends(require_scope(control_plane, "admin"))]
    router = APIRouter(dependencies=dependencies)

    def current() -> TicketCaller | None:
        if caller is None or isinstance(caller, TicketCaller):
            return caller
        return caller()

    @router.post("/calls", status_code=202, response_model=None)
    async def place_ticket_call(body: TicketCallRequest) -> JSONResponse:
        ticket_caller = current()
        try:
            if ticket_caller is None:
                raise AgentNotReady("outbound calls are not available: the agent is not running")
            placed = await ticket_caller.call_ticket(body.ticket_id)
        except OutboundError as exc:
            return _error(exc.status, str(exc), _KINDS.get(exc.status, "call_failed"))
        return JSONResponse(placed.view(), 202)

    return router
