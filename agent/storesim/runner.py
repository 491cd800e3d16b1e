"""Start and stop the whole simulator (SSH listeners + HTTP API) in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from agent.storesim.hostkey import known_hosts_line, load_or_create_host_key, write_known_hosts
from agent.storesim.http_api import create_app
from agent.storesim.scenario import load_scenario
from agent.storesim.ssh_server import StoreSSHListener
from agent.storesim.state import SimState

DEFAULT_TOKEN = "dev-token"


@dataclass
class StoreSim:
    """A running simulator. Use `async with StoreSim(...) as sim:` or start()/stop()."""

    scenario: str = "demo"
    state_dir: Path = field(default_factory=lambda: Path("~/.trunkline/storesim").expanduser())
    ssh_host: str = "127.0.0.1"
    ssh_port: int = 2222  # first store; further stores take the following ports
    http_host: str = "127.0.0.1"
    http_port: int = 8100
    token: str = DEFAULT_TOKEN
    seed: int = 0
    timing: dict[str, float] | None = None  # overrides the scenario's (tests use short ones)

    def __post_init__(self) -> None:
        spec = load_scenario(self.scenario)
        if self.timing:
            spec = {**spec, "timing": {**(spec.get("timing") or {}), **self.timing}}
        self.state = SimState(spec, seed=self.seed)
        self.host_key = load_or_create_host_key(self.state_dir)
        self.listeners: dict[tuple[int, int], StoreSSHListener] = {}
        self.known_hosts: list[str] = []
        self.known_hosts_path: Path | None = None
        self._server: uvicorn.Server | None = None
        self._http_task: asyncio.Task | None = None

    @property
    def http_url(self) -> str:
        return f"http://{self.http_host}:{self.http_port}"

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            # A port already in use must not leave half a simulator listening.
            await self.stop()
            raise

    async def _start(self) -> None:
        for index, (key, store) in enumerate(self.state.stores.items()):
            listener = StoreSSHListener(self.state, key, self.host_key)
            wanted = self.ssh_port + index if self.ssh_port else 0
            store.ssh_host = self.ssh_host
            store.ssh_port = await listener.start(self.ssh_host, wanted)
            self.listeners[key] = listener
            self.known_hosts.append(known_hosts_line(self.host_key, self.ssh_host, store.ssh_port))
        self.known_hosts_path = write_known_hosts(self.state_dir, self.known_hosts)

        app = create_app(self.state, self.token, on_store_action=self._after_store_action)
        config = uvicorn.Config(
            app, host=self.http_host, port=self.http_port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._http_task = asyncio.create_task(self._server.serve())
        for _ in range(200):  # bounded: 10 s for uvicorn to bind
            if self._server.started or self._http_task.done():
                break
            await asyncio.sleep(0.05)
        if not self._server.started:
            raise RuntimeError(f"store-sim HTTP API could not start on {self.http_url}")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._http_task is not None:
            # uvicorn ends with SystemExit when it cannot bind; that is reported by start().
            with contextlib.suppress(Exception, SystemExit):
                await asyncio.wait_for(self._http_task, 5)
        for listener in self.listeners.values():
            await listener.close()

    async def __aenter__(self) -> StoreSim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _after_store_action(self, chain: int, store: int, action: str) -> None:
        if action == "restart_pc":
            self.listeners[(chain, store)].drop_connections()
