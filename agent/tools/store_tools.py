"""The store tools one call may use, bound to that call's store and ticket.

The store and the ticket come from the call (the ticket that started it, or what the
caller confirmed), never from the LLM's arguments, so the model can only act on the
lanes of the store it is talking to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.tools.api_clients import StoreMasterClient, TicketClient
from agent.tools.registry import ToolRegistry, ToolSpec
from agent.tools.store_ssh import StoreAddress, StoreSSH

_LANE = {"type": "integer", "minimum": 1, "maximum": 99, "description": "checkout lane number"}


def _lane_only(description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"lane": {**_LANE, "description": description}},
        "required": ["lane"],
        "additionalProperties": False,
    }


_NO_ARGS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


@dataclass(frozen=True)
class CallContext:
    chain: int
    store: int
    ticket_id: str | None = None


class StoreTools:
    def __init__(
        self,
        context: CallContext,
        ssh: StoreSSH,
        storemaster: StoreMasterClient,
        tickets: TicketClient | None = None,
    ) -> None:
        self.context = context
        self._ssh = ssh
        self._storemaster = storemaster
        self._tickets = tickets
        self._address: StoreAddress | None = None

    async def address(self) -> StoreAddress:
        if self._address is None:
            record = await self._storemaster.get_store(self.context.chain, self.context.store)
            self._address = StoreAddress(str(record["ip_address"]), int(record["ssh_port"]))
        return self._address

    # ------------------------------------------------------------ executors

    async def check_printer_status(self, lane: int):
        return await self._ssh.printer_status(await self.address(), lane)

    async def send_test_print(self, lane: int):
        return await self._ssh.test_print(await self.address(), lane)

    async def clean_print_head(self, lane: int):
        return await self._ssh.ink_clean(await self.address(), lane)

    async def reset_printer(self, lane: int):
        return await self._ssh.printer_reset(await self.address(), lane)

    async def list_lanes(self):
        return await self._ssh.lanes(await self.address())

    async def get_store_info(self) -> dict[str, Any]:
        return await self._storemaster.get_store(self.context.chain, self.context.store)

    async def get_ticket(self) -> dict[str, Any]:
        return await self._ticket_client().get(self._ticket_id())

    async def add_ticket_note(self, text: str) -> dict[str, Any]:
        return await self._ticket_client().add_note(self._ticket_id(), text)

    async def update_ticket(self, status: str, resolution_notes: str | None = None) -> dict:
        return await self._ticket_client().update(self._ticket_id(), status, resolution_notes)  # type: ignore[arg-type]

    def _ticket_client(self) -> TicketClient:
        if self._tickets is None:
            raise RuntimeError("this call has no ticket client")
        return self._tickets

    def _ticket_id(self) -> str:
        if self.context.ticket_id is None:
            raise RuntimeError("this call has no ticket")
        return self.context.ticket_id

    # ------------------------------------------------------------ registry

    def registry(self) -> ToolRegistry:
        specs = [
            ToolSpec(
                "check_printer_status",
                "Read the coupon printer's status on a lane (Idle/Busy/Off Line/Error, "
                "paper, cover, ink, last error).",
                _lane_only("lane whose printer to check"),
                self.check_printer_status,
            ),
            ToolSpec(
                "send_test_print",
                "Send a test coupon to a lane's printer; fails if the printer is not Idle.",
                _lane_only("lane to print the test coupon on"),
                self.send_test_print,
            ),
            ToolSpec(
                "clean_print_head",
                "Start a print head cleaning on a lane (the printer is Busy for a few seconds).",
                _lane_only("lane whose print head to clean"),
                self.clean_print_head,
            ),
            ToolSpec(
                "reset_printer",
                "Reset a lane's printer (Off Line for a few seconds, then its real state).",
                _lane_only("lane whose printer to reset"),
                self.reset_printer,
            ),
            ToolSpec(
                "list_lanes", "List every lane and its printer status.", _NO_ARGS, self.list_lanes
            ),
            ToolSpec(
                "get_store_info",
                "The store's record from StoreMaster.",
                _NO_ARGS,
                self.get_store_info,
            ),
        ]
        if self._tickets is not None and self.context.ticket_id is not None:
            specs += [
                ToolSpec("get_ticket", "The ticket this call is about.", _NO_ARGS, self.get_ticket),
                ToolSpec(
                    "add_ticket_note",
                    "Add a note to the ticket (what was tried, what the caller said).",
                    {
                        "type": "object",
                        "properties": {
                            "text": {"type": "string", "minLength": 1, "maxLength": 2000}
                        },
                        "required": ["text"],
                        "additionalProperties": False,
                    },
                    self.add_ticket_note,
                ),
                ToolSpec(
                    "update_ticket",
                    "Set the ticket's status, with resolution notes when closing it.",
                    {
                        "type": "object",
                        "properties": {
                            "status": {"enum": ["in_progress", "resolved", "escalated"]},
                            "resolution_notes": {"type": "string", "maxLength": 4000},
                        },
                        "required": ["status"],
                        "additionalProperties": False,
                    },
                    self.update_ticket,
                ),
            ]
        return ToolRegistry(specs)
