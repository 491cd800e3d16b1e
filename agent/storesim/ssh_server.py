"""The store PCs over SSH: one listener per store, asyncssh behind it.

Connections are accepted on a plain socket first so a hung PC can behave like a real
one: the TCP connection is accepted, and then nothing ever answers (no SSH banner, no
command output) until the PC is restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import asyncssh

from agent.storesim.commands import run_command
from agent.storesim.state import SimState, Store

log = logging.getLogger(__name__)
_HUNG_POLL_S = 0.1


class _NoAuthServer(asyncssh.SSHServer):
    """The simulated store PC trusts loopback callers; the agent's side of the trust is
    the host key check."""

    def begin_auth(self, username: str) -> bool:
        return False


class StoreSSHListener:
    def __init__(self, state: SimState, key: tuple[int, int], host_key: asyncssh.SSHKey):
        self._state = state
        self._key = key
        self._host_key = host_key
        self._sock: socket.socket | None = None
        self._accept_task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._held: set[socket.socket] = set()
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self.accepted = 0  # TCP connections accepted (tests check connection reuse)

    @property
    def store(self) -> Store:
        return self._state.stores[self._key]

    async def start(self, host: str, port: int) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(64)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self._sock = sock
        self._accept_task = asyncio.create_task(self._accept_loop())
        return sock.getsockname()[1]

    async def close(self) -> None:
        if self._accept_task:
            self._accept_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accept_task
        for conn in list(self._connections):
            conn.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for held in list(self._held):
            held.close()
        if self._sock:
            self._sock.close()

    def drop_connections(self) -> None:
        """A PC restart ends every session on it."""
        for conn in list(self._connections):
            conn.close()

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._sock is not None
        while True:
            client, _ = await loop.sock_accept(self._sock)
            self.accepted += 1
            task = asyncio.create_task(self._serve(client))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, client: socket.socket) -> None:
        # Hold the socket silently while the PC is hung or restarting.
        self._held.add(client)
        try:
            await self._until_pc_answers()
        finally:
            self._held.discard(client)
        try:
            conn = await asyncssh.run_server(
                client,
                server_factory=_NoAuthServer,
                server_host_keys=[self._host_key],
                process_factory=self._handle_process,
                login_timeout=30,
                keepalive_interval=0,
            )
        except (TimeoutError, OSError, asyncssh.Error) as exc:
            log.info("store %s: SSH handshake failed: %s", self._key, exc)
            client.close()
            return
        self._connections.add(conn)
        with contextlib.suppress(Exception):
            await conn.wait_closed()
        self._connections.discard(conn)

    async def _until_pc_answers(self) -> None:
        # Polled, not an Event: a restart ends by the clock, not by anyone signalling.
        while not self.store.pc_answers(self._state.clock()):  # noqa: ASYNC110
            await asyncio.sleep(_HUNG_POLL_S)

    async def _handle_process(self, process: asyncssh.SSHServerProcess) -> None:
        command = process.command
        try:
            # A PC that hangs mid-session stops answering commands too.
            await self._until_pc_answers()
            if command is None:
                process.stderr.write("ERROR interactive shells are not allowed\n")
                process.exit(2)
                return
            result = run_command(self._state, self.store, command)
            stream = process.stdout if result.allowed else process.stderr
            stream.write(result.output + "\n")
            process.exit(result.exit_status)
        except (asyncssh.BreakReceived, asyncssh.TerminalSizeChanged, BrokenPipeError):
            process.exit(1)
