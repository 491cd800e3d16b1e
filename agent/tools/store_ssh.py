"""SSH client for store PCs: host keys checked against our known_hosts, one reused
connection per store, connect and command timeouts, and only allow-listed commands."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from agent.tools import parsers
from agent.tools.errors import HostKeyMismatch, StoreCommandFailed, StoreUnreachable
from agent.tools.store_commands import StoreCommand, build_command

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class StoreSSH:
    def __init__(
        self,
        known_hosts: str | Path,
        username: str = "catalina",
        connect_timeout_s: float = 10.0,
        command_timeout_s: float = 15.0,
    ) -> None:
        path = Path(known_hosts).expanduser()
        if not path.is_file():
            # Refusing here beats falling back to "trust whatever answers".
            raise HostKeyMismatch(f"known_hosts file {path} does not exist")
        self._known_hosts = str(path)
        self._username = username
        self._connect_timeout_s = connect_timeout_s
        self._command_timeout_s = command_timeout_s
        self._connections: dict[StoreAddress, asyncssh.SSHClientConnection] = {}
        self._locks: dict[StoreAddress, asyncio.Lock] = {}

    # ------------------------------------------------------------ typed commands

    async def printer_status(self, store: StoreAddress, lane: int) -> parsers.PrinterStatus:
        output = await self.run(store, StoreCommand.PRINTER_STATUS, lane)
        return parsers.parse_printer_status(output, lane)

    async def test_print(self, store: StoreAddress, lane: int) -> parsers.CommandOutcome:
        output = await self.run(store, StoreCommand.TEST_PRINT, lane)
        return parsers.parse_test_print(output, lane)

    async def ink_clean(self, store: StoreAddress, lane: int) -> parsers.CommandOutcome:
        output = await self.run(store, StoreCommand.INK_CLEAN, lane)
        return parsers.parse_ink_clean(output, lane)

    async def printer_reset(self, store: StoreAddress, lane: int) -> parsers.CommandOutcome:
        output = await self.run(store, StoreCommand.PRINTER_RESET, lane)
        return parsers.parse_printer_reset(output, lane)

    async def lanes(self, store: StoreAddress) -> list[parsers.LaneSummary]:
        return parsers.parse_lanes(await self.run(store, StoreCommand.LANES))

    # ------------------------------------------------------------ transport

    async def run(self, store: StoreAddress, command: StoreCommand, lane: int | None = None) -> str:
        """Run one allow-listed command; returns its stdout. Validation happens before
        any connection is made, so a refused call sends nothing."""
        line = build_command(command, lane)
        conn = await self._connection(store)
        try:
            result = await asyncio.wait_for(
                conn.run(line, check=False), timeout=self._command_timeout_s
            )
        except TimeoutError:
            # The session may be wedged; the next call starts from a fresh connection.
            await self._discard(store)
            raise StoreUnreachable(
                f"store {store} did not answer `{command.value}` within "
                f"{self._command_timeout_s:g} s"
            ) from None
        except (OSError, asyncssh.Error) as exc:
            await self._discard(store)
            raise StoreUnreachable(f"store {store}: connection lost: {exc}") from exc
        stdout = str(result.stdout or "")
        if result.exit_status not in (0, 1):
            stderr = str(result.stderr or "").strip()
            raise StoreCommandFailed(
                f"store {store} refused `{command.value}` (exit {result.exit_status}): {stderr}"
            )
        return stdout

    async def _connection(self, store: StoreAddress) -> asyncssh.SSHClientConnection:
        lock = self._locks.setdefault(store, asyncio.Lock())
        async with lock:
            conn = self._connections.get(store)
            if conn is not None and not conn.is_closed():
                return conn
            conn = await self._connect(store)
            self._connections[store] = conn
            return conn

    async def _connect(self, store: StoreAddress) -> asyncssh.SSHClientConnection:
        try:
            # wait_for on top of connect_timeout: a peer that accepts TCP and never
            # sends a banner must not hold the call beyond our budget.
            return await asyncio.wait_for(
                asyncssh.connect(
                    store.host,
                    store.port,
                    known_hosts=self._known_hosts,
                    username=self._username,
                    client_keys=None,
                    password=None,
                    agent_path=None,
                    config=None,
                    connect_timeout=self._connect_timeout_s,
                    keepalive_interval=0,
                ),
                timeout=self._connect_timeout_s,
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            raise HostKeyMismatch(
                f"store {store}: host key not in {self._known_hosts} or different from it; "
                "refusing to connect"
            ) from exc
        except TimeoutError:
            raise StoreUnreachable(
                f"store {store} did not complete an SSH connection within "
                f"{self._connect_timeout_s:g} s"
            ) from None
        except (OSError, asyncssh.Error) as exc:
            raise StoreUnreachable(f"store {store}: cannot connect: {exc}") from exc

    async def _discard(self, store: StoreAddress) -> None:
        conn = self._connections.pop(store, None)
        if conn is not None:
            conn.abort()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 1)

    async def close(self) -> None:
        for store in list(self._connections):
            await self._discard(store)

    async def __aenter__(self) -> StoreSSH:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
