"""Bearer-key auth for the management API: read scope for GET, admin for writes.

401 when the key is missing, malformed, unknown or revoked (with a Bearer
challenge); 403 when a valid key lacks the scope. Declared through HTTPBearer so
the OpenAPI document carries the security scheme.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from agent.controlplane import apikeys
from agent.controlplane.db import ControlPlaneStore
from agent.controlplane.errors import InvalidApiKey

# Which scopes satisfy which requirement: admin can also read.
_GRANTS = {"read": {"read", "admin"}, "admin": {"admin"}}

bearer = HTTPBearer(auto_error=False, description="An API key from `trunkline apikey create`.")


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=message, headers={"WWW-Authenticate": "Bearer"}
    )


def require_scope(
    store: ControlPlaneStore, scope: str
) -> Callable[..., Awaitable[apikeys.KeyInfo]]:
    """A FastAPI dependency admitting keys whose scope grants `scope`."""
    allowed = _GRANTS[scope]

    async def dependency(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> apikeys.KeyInfo:
        if credentials is None:
            raise _unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        try:
            async with store.session() as session:
                key = await apikeys.authenticate(session, credentials.credentials)
        except InvalidApiKey as exc:
            raise _unauthorized(str(exc)) from None
        if key.scope not in allowed:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"this API key has scope {key.scope!r}; this request needs {scope!r}",
            )
        return key

    return dependency
