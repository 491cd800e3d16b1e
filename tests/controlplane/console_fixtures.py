"""Shared pieces of the console and goal-tracking tests: the real embedded LLM, an app
with the management and console routes, and a webhook receiver on a real loopback port.

Ports: 19250-19499 (helper C2's range) for receivers and dead endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response

from agent.controlplane.api import build_router
from agent.controlplane.console import LLMSource, build_console_router
from agent.controlplane.db import ControlPlaneStore
from agent.controlplane.webhooks import InvalidSignature, verify_signature
from tests.controlplane.conftest import mint_key

LLM_MODEL = "qwen2.5-coder-0.5b-instruct"
PORT_RANGE = range(19250, 19500)


def free_port() -> int:
    """A free loopback port in this suite's range."""
    for port in PORT_RANGE:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORT_RANGE.start}-{PORT_RANGE.stop - 1}")


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: bool
    why: str | None

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook endpoint as a user would write one: verifies, then answers.

    `statuses` are the answers to the first requests in order (then 200)."""

    secret: bytes
    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/goal?token=abc"

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hooks/goal")
        async def hook(request: Request) -> Response:
            body = await request.body()
            header = request.headers.get("x-trunkline-signature")
            try:
                verify_signature(self.secret, header, body, tolerance_s=60)
                verified, why = True, None
            except InvalidSignature as exc:
                verified, why = False, str(exc)
            self.received.append(Received(dict(request.headers), body, verified, why))
            if not verified:
                return Response(status_code=401)
            status = self.statuses.pop(0) if self.statuses else 200
            return Response(status_code=status)

        return app


@contextlib.asynccontextmanager
async def running(receiver: Receiver) -> AsyncIterator[Receiver]:
    """Serve `receiver` with uvicorn on 127.0.0.1 until the block ends."""
    receiver.port = free_port()
    config = uvicorn.Config(
        receiver.app(), host="127.0.0.1", port=receiver.port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):  # bounded: 10 s
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError("the webhook receiver did not start within 10 s")
        yield receiver
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@dataclass
class ConsoleApi:
    store: ControlPlaneStore
    client: httpx.AsyncClient
    admin: dict[str, str]
    reader: dict[str, str]

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.post(f"/api{path}", json=body, headers=self.admin)
        assert response.status_code == 201, response.text
        return response.json()


@contextlib.asynccontextmanager
async def console_api(url: str, llm: LLMSource, **options: Any) -> AsyncIterator[ConsoleApi]:
    """The management routes and the console on `llm`, mounted as `trunkline serve` does."""
    async with ControlPlaneStore(url) as store:
        app = FastAPI()
        app.include_router(build_router(store), prefix="/api")
        app.include_router(build_console_router(store, llm, **options), prefix="/api")
        admin = await mint_key(store, "admin")
        reader = await mint_key(store, "read")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://cp.test", timeout=300
        ) as client:
            yield ConsoleApi(
                store,
                client,
                {"Authorization": f"Bearer {admin}"},
                {"Authorization": f"Bearer {reader}"},
            )
