"""HTTP side of the simulator: StoreMaster, tickets, and the sim's own control endpoints.

Every route takes the bearer token. The `/sim/...` routes are what the simulated caller
(and tests) use to do the physical things a POC does at the lane.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from agent.storesim.printer import LANE_ACTIONS, ActionRefused
from agent.storesim.state import TICKET_STATUSES, NotFound, SimState

LaneAction = Literal[LANE_ACTIONS]  # type: ignore[valid-type]


class TicketPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal[TICKET_STATUSES] | None = None  # type: ignore[valid-type]
    resolution_notes: str | None = Field(default=None, max_length=10_000)


class TicketNote(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=10_000)


class LaneActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: LaneAction


class StoreActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["restart_pc", "hang_pc"]


def create_app(
    state: SimState,
    token: str,
    on_store_action: Callable[[int, int, str], None] | None = None,
) -> FastAPI:
    app = FastAPI(title="trunkline store simulator", version="1")

    def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
        scheme, _, given = (authorization or "").partition(" ")
        # Constant-time compare: the token is the only thing guarding the APIs.
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.encode(), token.encode()):
            raise HTTPException(
                401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(ActionRefused)
    async def _refused(_: Request, exc: ActionRefused) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    auth = [Depends(require_token)]

    @app.get("/stores/{chain}", dependencies=auth)
    async def list_stores(chain: int) -> dict[str, Any]:
        return {"chain": chain, "stores": sorted(s for c, s in state.stores if c == chain)}

    @app.get("/stores/{chain}/{store}", dependencies=auth)
    async def get_store(chain: int, store: int) -> dict[str, Any]:
        return state.store(chain, store).record()

    @app.get("/tickets/{ticket_id}", dependencies=auth)
    async def get_ticket(ticket_id: str) -> dict[str, Any]:
        return state.ticket(ticket_id)

    @app.patch("/tickets/{ticket_id}", dependencies=auth)
    async def patch_ticket(ticket_id: str, body: TicketPatch) -> dict[str, Any]:
        return state.update_ticket(ticket_id, body.status, body.resolution_notes)

    @app.post("/tickets/{ticket_id}/notes", dependencies=auth, status_code=201)
    async def add_note(ticket_id: str, body: TicketNote) -> dict[str, Any]:
        return state.add_note(ticket_id, body.text)

    @app.get("/sim/state", dependencies=auth)
    async def sim_state() -> dict[str, Any]:
        return state.snapshot()

    @app.post("/sim/reset", dependencies=auth)
    async def sim_reset() -> dict[str, Any]:
        state.reset()
        return state.snapshot()

    @app.post("/sim/stores/{chain}/{store}/lanes/{lane}/actions", dependencies=auth)
    async def lane_action(chain: int, store: int, lane: int, body: LaneActionBody) -> dict:
        return state.lane_action(chain, store, lane, body.action)

    @app.post("/sim/lanes/{lane}/actions", dependencies=auth)
    async def first_store_lane_action(lane: int, body: LaneActionBody) -> dict:
        """Shorthand for single-store scenarios: the scenario's first store."""
        chain, store = next(iter(state.stores))
        return state.lane_action(chain, store, lane, body.action)

    @app.post("/sim/stores/{chain}/{store}/actions", dependencies=auth)
    async def store_action(chain: int, store: int, body: StoreActionBody) -> dict:
        result = state.store_action(chain, store, body.action)
        if on_store_action is not None:
            on_store_action(chain, store, body.action)
        return result

    return app
