"""Helpers to run the real store simulator on loopback ports from our range (17000-17999)."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from agent.storesim.runner import StoreSim

PORT_RANGE = (17000, 17999)
# Short timed phases keep the tests quick; the state machine is the same.
# Short; a reset is long enough that a status read right after it still sees Off Line
# on a loaded 2-core machine (0.4 s was seen to be too short in CI).
FAST_TIMING = {"ink_clean_s": 0.4, "reset_s": 1.5, "power_on_s": 0.3, "pc_restart_s": 0.4}
TOKEN = "test-token"


_handed_out: set[int] = set()


def free_port() -> int:
    """A port in our range that is free now and not handed out before in this run (the
    probe closes at once, so two calls could otherwise return the same port)."""
    for _ in range(500):
        port = random.randint(*PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free port in {PORT_RANGE}")


def make_sim(state_dir: Path, scenario: str = "demo", **overrides) -> StoreSim:
    return StoreSim(
        scenario=scenario,
        state_dir=state_dir,
        ssh_port=free_port(),
        http_port=free_port(),
        token=TOKEN,
        timing=FAST_TIMING,
        **overrides,
    )


def api(sim: StoreSim, token: str | None = TOKEN) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=sim.http_url, headers=headers, timeout=5, trust_env=False)


async def wait_for(predicate: Callable[[], object], timeout_s: float = 5.0) -> None:
    """Poll a synchronous or async predicate until true; bounded in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout_s} s")
