"""StoreSSH against the simulator's real SSH server: typed results, connection reuse,
host key verification and timeouts."""

from __future__ import annotations

import asyncio
import time

import asyncssh
import pytest

from agent.tools.errors import HostKeyMismatch, StoreUnreachable
from agent.tools.parsers import CommandOutcome, LaneSummary, PrinterStatus
from agent.tools.store_ssh import StoreAddress, StoreSSH
from tests.storesim.simulator import api, free_port, wait_for
from tests.tools.helpers import store_address


async def test_commands_come_back_as_typed_results(sim):
    async with StoreSSH(sim.known_hosts_path) as ssh:
        address = store_address(sim)
        assert await ssh.printer_status(address, 4) == PrinterStatus(
            lane=4,
            status="Off Line",
            paper="Out",
            cover="Closed",
            ink="OK",
            last_error="E07 PAPER OUT",
        )
        assert await ssh.test_print(address, 4) == CommandOutcome(
            lane=4, started=False, not_ready_status="Off Line"
        )
        lanes = await ssh.lanes(address)
        assert LaneSummary(4, "Off Line") in lanes and LaneSummary(1, "Idle") in lanes
        async with api(sim) as http:
            await http.post("/sim/lanes/4/actions", json={"action": "load_paper"})
        assert (await ssh.printer_status(address, 4)).ready
        assert (await ssh.test_print(address, 4)).started
        assert (await ssh.ink_clean(address, 4)).started
        assert (await ssh.printer_status(address, 4)).status == "Busy"
        await wait_for(lambda: sim.state.printer(1, 1042, 4).status(time.monotonic()) == "Idle")
        assert (await ssh.printer_reset(address, 4)).started
        assert (await ssh.printer_status(address, 4)).status == "Off Line"


async def test_one_connection_per_store_is_reused(sim):
    listener = next(iter(sim.listeners.values()))
    async with StoreSSH(sim.known_hosts_path) as ssh:
        address = store_address(sim)
        results = await asyncio.gather(*(ssh.printer_status(address, lane) for lane in (1, 2, 3)))
        await ssh.lanes(address)
    assert [r.lane for r in results] == [1, 2, 3]
    assert listener.accepted == 1
    assert len(sim.state.command_log) == 4


async def test_a_different_host_key_refuses_to_connect(sim, tmp_path):
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().split()
    port = store_address(sim).port
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {impostor[0]} {impostor[1]}\n")
    async with StoreSSH(known_hosts, connect_timeout_s=5) as ssh:
        with pytest.raises(HostKeyMismatch, match="refusing to connect"):
            await ssh.printer_status(store_address(sim), 4)
    assert sim.state.command_log == []


async def test_a_store_missing_from_known_hosts_refuses_to_connect(sim, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sim.known_hosts[0].replace(f":{store_address(sim).port} ", ":1 ") + "\n")
    async with StoreSSH(known_hosts, connect_timeout_s=5) as ssh:
        with pytest.raises(HostKeyMismatch):
            await ssh.lanes(store_address(sim))
    assert sim.state.command_log == []


def test_a_missing_known_hosts_file_is_refused_up_front(tmp_path):
    with pytest.raises(HostKeyMismatch, match="does not exist"):
        StoreSSH(tmp_path / "nope")


@pytest.mark.parametrize("sim", ["pc_unresponsive"], indirect=True)
async def test_a_hung_store_times_out_with_store_unreachable(sim):
    async with StoreSSH(sim.known_hosts_path, connect_timeout_s=1.0) as ssh:
        started = time.monotonic()
        with pytest.raises(StoreUnreachable, match="within 1 s"):
            await ssh.printer_status(store_address(sim), 4)
        elapsed = time.monotonic() - started
    assert elapsed < 3.0  # the configured 1 s, plus slack for a loaded machine
    assert sim.state.command_log == []


async def test_a_store_that_hangs_mid_session_times_out_then_recovers_after_restart(sim):
    async with StoreSSH(sim.known_hosts_path, command_timeout_s=1.0) as ssh:
        address = store_address(sim)
        assert (await ssh.printer_status(address, 2)).ready
        async with api(sim) as http:
            await http.post("/sim/stores/1/1042/actions", json={"action": "hang_pc"})
            with pytest.raises(StoreUnreachable, match="did not answer `printer_status`"):
                await ssh.printer_status(address, 2)
            await http.post("/sim/stores/1/1042/actions", json={"action": "restart_pc"})
        # The wedged connection was dropped; the next call reconnects once the PC is up.
        assert (await ssh.printer_status(address, 2)).ready


async def test_a_closed_port_is_store_unreachable(sim):
    async with StoreSSH(sim.known_hosts_path, connect_timeout_s=2) as ssh:
        with pytest.raises(StoreUnreachable, match="cannot connect"):
            await ssh.lanes(StoreAddress("127.0.0.1", free_port()))
