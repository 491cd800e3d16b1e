"""The simulator's whole world: stores with their lanes' printers, tickets, and a log of
every command the store PCs received (tests use it to prove what did and did not run)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from agent.storesim.printer import ActionRefused, Clock, Printer, Timing

TICKET_STATUSES = ("new", "in_progress", "resolved", "escalated")


class NotFound(LookupError):
    """An unknown store, lane or ticket (maps to HTTP 404)."""


@dataclass
class Store:
    chain: int
    store: int
    name: str
    timezone: str
    address: str
    phone: str
    sip_uri: str
    poc_name: str
    paper_rolls: int
    printers: dict[int, Printer]
    pc_hung: bool = False
    pc_restart_until: float = 0.0
    ssh_host: str = "127.0.0.1"
    ssh_port: int = 0

    def pc_answers(self, now: float) -> bool:
        return not self.pc_hung and now >= self.pc_restart_until

    def record(self) -> dict[str, Any]:
        """StoreMaster's view of the store."""
        return {
            "chain": self.chain,
            "store": self.store,
            "name": self.name,
            "timezone": self.timezone,
            "address": self.address,
            "ip_address": self.ssh_host,
            "ssh_port": self.ssh_port,
            "phone": self.phone,
            "sip_uri": self.sip_uri,
            "poc_name": self.poc_name,
            "lanes": sorted(self.printers),
        }


@dataclass
class SimState:
    scenario: dict[str, Any]
    seed: int = 0
    clock: Clock = time.monotonic
    stores: dict[tuple[int, int], Store] = field(default_factory=dict)
    tickets: dict[str, dict[str, Any]] = field(default_factory=dict)
    command_log: list[dict[str, Any]] = field(default_factory=list)
    timing: Timing = field(default_factory=Timing)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Back to the scenario's starting point (ports are kept: listeners stay up)."""
        ports = {key: store.ssh_port for key, store in self.stores.items()}
        # The seed jitters the timed phases a little so evals do not lock onto one exact
        # duration; the same seed always gives the same world.
        rng = random.Random(self.seed)
        base = Timing(**(self.scenario.get("timing") or {}))
        jitter = (lambda s: round(s * rng.uniform(0.9, 1.1), 3)) if self.seed else (lambda s: s)
        self.timing = Timing(
            ink_clean_s=jitter(base.ink_clean_s),
            reset_s=jitter(base.reset_s),
            power_on_s=jitter(base.power_on_s),
            pc_restart_s=jitter(base.pc_restart_s),
        )
        self.stores = {}
        for spec in self.scenario["stores"]:
            printers = {
                lane["lane"]: Printer(**lane) for lane in (dict(item) for item in spec["lanes"])
            }
            store = Store(
                chain=spec["chain"],
                store=spec["store"],
                name=spec.get("name", f"Store {spec['store']}"),
                timezone=spec.get("timezone", "UTC"),
                address=spec.get("address", ""),
                phone=spec.get("phone", ""),
                sip_uri=spec.get("sip_uri", f"sip:store{spec['store']}@127.0.0.1:5070"),
                poc_name=spec.get("poc_name", "the store manager"),
                paper_rolls=int(spec.get("paper_rolls", 6)),
                printers=printers,
                pc_hung=bool(spec.get("pc_hung", False)),
            )
            store.ssh_port = ports.get((store.chain, store.store), 0)
            self.stores[(store.chain, store.store)] = store
        self.tickets = {}
        now = self.clock()
        for spec in self.scenario.get("tickets") or []:
            printer = self.stores[(spec["chain"], spec["store"])].printers.get(spec["lane"])
            self.tickets[spec["id"]] = {
                "id": spec["id"],
                "chain": spec["chain"],
                "store": spec["store"],
                "lane": spec["lane"],
                "issue": spec["issue"],
                "description": spec.get("description", ""),
                "status": spec.get("status", "new"),
                "printer_status": printer.status_line(now) if printer else None,
                "resolution_notes": None,
                "notes": [],
            }
        self.command_log = []

    # ------------------------------------------------------------ lookups

    def store(self, chain: int, store: int) -> Store:
        found = self.stores.get((chain, store))
        if found is None:
            raise NotFound(f"store {chain}/{store} is unknown")
        return found

    def printer(self, chain: int, store: int, lane: int) -> Printer:
        printer = self.store(chain, store).printers.get(lane)
        if printer is None:
            raise NotFound(f"store {chain}/{store} has no lane {lane}")
        return printer

    def ticket(self, ticket_id: str) -> dict[str, Any]:
        found = self.tickets.get(ticket_id)
        if found is None:
            raise NotFound(f"ticket {ticket_id} is unknown")
        return found

    # ------------------------------------------------------------ changes

    def lane_action(self, chain: int, store: int, lane: int, action: str) -> dict[str, Any]:
        target = self.store(chain, store)
        printer = self.printer(chain, store, lane)
        used = printer.act(action, self.clock(), self.timing, target.paper_rolls)
        target.paper_rolls -= used
        return printer.snapshot(self.clock())

    def store_action(self, chain: int, store: int, action: str) -> dict[str, Any]:
        target = self.store(chain, store)
        if action == "restart_pc":
            # The PC comes back answering after the restart, whatever hung it before.
            target.pc_hung = False
            target.pc_restart_until = self.clock() + self.timing.pc_restart_s
        elif action == "hang_pc":
            target.pc_hung = True
        else:
            raise ActionRefused(f"unknown store action {action!r}")
        return self.store_snapshot(target)

    def update_ticket(
        self, ticket_id: str, status: str | None, resolution_notes: str | None
    ) -> dict[str, Any]:
        ticket = self.ticket(ticket_id)
        if status is not None:
            ticket["status"] = status
        if resolution_notes is not None:
            ticket["resolution_notes"] = resolution_notes
        return ticket

    def add_note(self, ticket_id: str, text: str) -> dict[str, Any]:
        ticket = self.ticket(ticket_id)
        ticket["notes"].append({"text": text, "at": time.time()})
        return ticket

    # ------------------------------------------------------------ inspection

    def store_snapshot(self, store: Store) -> dict[str, Any]:
        now = self.clock()
        return {
            **store.record(),
            "paper_rolls": store.paper_rolls,
            "pc_answers": store.pc_answers(now),
            "printers": [store.printers[lane].snapshot(now) for lane in sorted(store.printers)],
        }

    def snapshot(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.get("name"),
            "seed": self.seed,
            "timing": vars(self.timing),
            "stores": [self.store_snapshot(store) for store in self.stores.values()],
            "tickets": list(self.tickets.values()),
            "commands": list(self.command_log),
        }
