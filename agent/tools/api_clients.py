"""HTTP clients for StoreMaster and the ticket system (bearer token, never logged)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import httpx

from agent.tools.errors import ApiAuthError, ApiError, ApiNotFound

TOKEN_ENV = "TRUNKLINE_STORE_API_TOKEN"
TOKEN_FILE_ENV = "TRUNKLINE_STORE_API_TOKEN_FILE"
TicketStatus = Literal["new", "in_progress", "resolved", "escalated"]


def load_token(token: str | None = None, token_file: str | Path | None = None) -> str:
    """The API token: explicit value, else a file, else $TRUNKLINE_STORE_API_TOKEN, else
    the file named by $TRUNKLINE_STORE_API_TOKEN_FILE."""
    if token:
        return token
    file = token_file or os.environ.get(TOKEN_FILE_ENV)
    if file:
        path = Path(file).expanduser()
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ApiAuthError(f"cannot read API token file {path}: {exc.strerror}") from exc
        if not value:
            raise ApiAuthError(f"API token file {path} is empty")
        return value
    value = os.environ.get(TOKEN_ENV, "").strip()
    if value:
        return value
    raise ApiAuthError(f"no store API token: pass one, or set {TOKEN_ENV} or {TOKEN_FILE_ENV}")


class _BearerAuth(httpx.Auth):
    """Keeps the token out of client reprs and request logs (httpx logs URLs only)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request):
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request

    def __repr__(self) -> str:
        return "_BearerAuth(***)"


class _ApiClient:
    what = "API"

    def __init__(self, base_url: str, token: str, timeout_s: float = 10.0) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, auth=_BearerAuth(token), timeout=timeout_s, trust_env=False
        )

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(f"{self.what} {method} {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 401:
            raise ApiAuthError(f"{self.what} rejected the bearer token ({method} {path})")
        if response.status_code == 404:
            raise ApiNotFound(f"{self.what} {method} {path}: {_detail(response)}")
        if response.status_code >= 400:
            raise ApiError(
                f"{self.what} {method} {path}: HTTP {response.status_code}: {_detail(response)}"
            )
        return response.json()

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail"))
    except ValueError:
        return response.text[:200]


class StoreMasterClient(_ApiClient):
    what = "StoreMaster"

    async def get_store(self, chain: int, store: int) -> dict[str, Any]:
        return await self._request("GET", f"/stores/{int(chain)}/{int(store)}")

    async def list_stores(self, chain: int) -> list[int]:
        """The chain's store numbers (to match a store number a caller said)."""
        data = await self._request("GET", f"/stores/{int(chain)}")
        return [int(store) for store in data.get("stores") or []]


class TicketClient(_ApiClient):
    what = "ticket API"

    async def get(self, ticket_id: str) -> dict[str, Any]:
        return await self._request("GET", f"/tickets/{_ticket_path(ticket_id)}")

    async def update(
        self,
        ticket_id: str,
        status: TicketStatus | None = None,
        resolution_notes: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if status is not None:
            body["status"] = status
        if resolution_notes is not None:
            body["resolution_notes"] = resolution_notes
        return await self._request("PATCH", f"/tickets/{_ticket_path(ticket_id)}", json=body)

    async def add_note(self, ticket_id: str, text: str) -> dict[str, Any]:
        return await self._request(
            "POST", f"/tickets/{_ticket_path(ticket_id)}/notes", json={"text": text}
        )


def _ticket_path(ticket_id: str) -> str:
    # Ticket ids are opaque but must stay one path segment.
    if not ticket_id or not ticket_id.replace("-", "").replace("_", "").isalnum():
        raise ApiError(f"bad ticket id {ticket_id!r}")
    return ticket_id
