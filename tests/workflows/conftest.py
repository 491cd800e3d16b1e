from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
import pytest

from agent.tools.api_clients import StoreMasterClient, TicketClient
from agent.tools.store_ssh import StoreSSH
from agent.tools.store_tools import CallContext, StoreTools
from agent.workflows import WorkflowRun, load_library
from tests.storesim.simulator import TOKEN, api, make_sim
from tests.workflows.harness import ScriptedCaller, ScriptedClassifier, Turn


@pytest.fixture(scope="session")
def library():
    return load_library()


@pytest.fixture
async def sim(request, tmp_path):
    """The real store simulator on loopback; parametrize indirectly with a scenario."""
    scenario = getattr(request, "param", "paper_out")
    async with make_sim(tmp_path / "storesim", scenario) as running:
        yield running


@dataclass
class Call:
    """Everything one call needs: the sim, its HTTP API, the call's tools."""

    sim: object
    http: httpx.AsyncClient
    tools: object
    library: dict
    classifier: ScriptedClassifier

    def run(self, workflow: str, **options) -> WorkflowRun:
        context = {"lane": 4, "chain": 1, "store": 1042, "ticket_id": "T1"}
        options.setdefault("max_settle_s", 5.0)
        return WorkflowRun(
            self.library[workflow],
            self.tools,
            self.classifier,
            context,
            library=self.library,
            **options,
        )

    def caller(self, script: dict[str, list[Turn]]) -> ScriptedCaller:
        return ScriptedCaller(self.http, script)

    def printer(self):
        return self.sim.state.printer(1, 1042, 4)

    def printer_status(self) -> str:
        return self.printer().status(time.monotonic())

    def ticket(self) -> dict:
        return self.sim.state.ticket("T1")


@pytest.fixture
async def call(sim, library):
    # Short SSH timeouts: the hung-PC scenario must fail fast, not after the defaults.
    async with (
        StoreSSH(sim.known_hosts_path, connect_timeout_s=1.0, command_timeout_s=3.0) as ssh,
        api(sim) as http,
        StoreMasterClient(sim.http_url, TOKEN) as storemaster,
        TicketClient(sim.http_url, TOKEN) as tickets,
    ):
        tools = StoreTools(CallContext(1, 1042, "T1"), ssh, storemaster, tickets).registry()
        yield Call(sim, http, tools, library, ScriptedClassifier())
