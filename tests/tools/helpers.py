from __future__ import annotations

from agent.tools.api_clients import StoreMasterClient, TicketClient
from agent.tools.store_ssh import StoreAddress, StoreSSH
from agent.tools.store_tools import CallContext, StoreTools
from tests.storesim.simulator import TOKEN


def store_address(sim) -> StoreAddress:
    store = next(iter(sim.state.stores.values()))
    return StoreAddress("127.0.0.1", store.ssh_port)


def call_tools(sim, ssh: StoreSSH, ticket_id: str | None = "T1") -> StoreTools:
    return StoreTools(
        CallContext(chain=1, store=1042, ticket_id=ticket_id),
        ssh,
        StoreMasterClient(sim.http_url, TOKEN),
        TicketClient(sim.http_url, TOKEN),
    )
