"""The simulated store PC over real SSH: command outputs, printer state transitions driven
by commands, time and the caller's physical actions, and refusal of everything else."""

from __future__ import annotations

import asyncio
import socket

import asyncssh
import pytest

from tests.storesim.simulator import api, wait_for


async def ssh_run(sim, line: str) -> asyncssh.SSHCompletedProcess:
    store = next(iter(sim.state.stores.values()))
    async with asyncssh.connect(
        "127.0.0.1",
        store.ssh_port,
        known_hosts=str(sim.known_hosts_path),
        username="catalina",
        client_keys=None,
        config=None,
    ) as conn:
        return await asyncio.wait_for(conn.run(line, check=False), 10)


async def status_line(sim, lane: int = 4) -> str:
    result = await ssh_run(sim, f"cd /catalina && printer_status {lane}")
    assert result.exit_status == 0, result.stderr
    return result.stdout.strip()


async def test_demo_lane_4_reports_paper_out_like_the_store_pc(sim):
    assert await status_line(sim) == (
        "Lane 4 Printer: Off Line Paper: Out Cover: Closed Ink: OK Last error: E07 PAPER OUT"
    )
    assert await status_line(sim, 2) == (
        "Lane 2 Printer: Idle Paper: OK Cover: Closed Ink: OK Last error: None"
    )


async def test_lanes_lists_every_lane_with_its_status(sim):
    result = await ssh_run(sim, "cd /catalina && lanes")
    assert result.stdout.splitlines() == ["1 Idle", "2 Idle", "3 Idle", "4 Off Line", "5 Idle"]


async def test_test_print_fails_while_off_line_and_prints_nothing(sim):
    result = await ssh_run(sim, "cd /catalina && coup 4")
    assert result.stdout.strip() == "ERROR lane 4 not ready: Off Line"
    async with api(sim) as http:
        printer = (await http.get("/sim/state")).json()["stores"][0]["printers"][3]
    assert printer["prints"] == []


async def test_loading_paper_makes_the_printer_idle_and_the_test_print_work(sim):
    async with api(sim) as http:
        response = await http.post("/sim/lanes/4/actions", json={"action": "load_paper"})
        assert response.status_code == 200
        assert await status_line(sim) == (
            "Lane 4 Printer: Idle Paper: OK Cover: Closed Ink: OK Last error: None"
        )
        result = await ssh_run(sim, "cd /catalina && coup 4")
        assert result.stdout.strip() == "Test coupon sent to lane 4"
        state = (await http.get("/sim/state")).json()
    store = state["stores"][0]
    assert store["paper_rolls"] == 5  # the roll came out of the store's stock
    assert [p["quality"] for p in store["printers"][3]["prints"]] == ["clear"]


async def test_an_action_that_does_not_fix_the_fault_leaves_it(sim):
    async with api(sim) as http:
        await http.post("/sim/lanes/4/actions", json={"action": "close_cover"})
    assert "Paper: Out" in await status_line(sim)


@pytest.mark.parametrize("sim", ["print_quality"], indirect=True)
async def test_ink_clean_is_busy_for_a_while_then_prints_come_out_clear(sim):
    await ssh_run(sim, "cd /catalina && coup 4")
    result = await ssh_run(sim, "cd /catalina && ink_clean 4")
    assert result.stdout.strip() == "Print head cleaning started on lane 4"
    assert (await status_line(sim)).startswith("Lane 4 Printer: Busy ")
    # Busy refuses a test print until the cleaning is over.
    assert (await ssh_run(sim, "cd /catalina && coup 4")).stdout.strip() == (
        "ERROR lane 4 not ready: Busy"
    )

    async def idle() -> bool:
        return (await status_line(sim)).startswith("Lane 4 Printer: Idle ")

    await wait_for(idle)
    await ssh_run(sim, "cd /catalina && coup 4")
    async with api(sim) as http:
        prints = (await http.get("/sim/state")).json()["stores"][0]["printers"][3]["prints"]
    assert [p["quality"] for p in prints] == ["faded", "clear"]


@pytest.mark.parametrize("sim", ["offline"], indirect=True)
async def test_reset_is_off_line_for_a_while_then_clears_a_link_glitch(sim):
    assert "Last error: E02 NO COMMUNICATION" in await status_line(sim)
    result = await ssh_run(sim, "cd /catalina && printer_reset 4")
    assert result.stdout.strip() == "Lane 4 printer reset"
    assert (await status_line(sim)).startswith("Lane 4 Printer: Off Line ")

    async def idle() -> bool:
        return (await status_line(sim)).startswith("Lane 4 Printer: Idle ")

    await wait_for(idle)
    assert (await status_line(sim)).endswith("Last error: None")


@pytest.mark.parametrize("sim", ["printer_error"], indirect=True)
async def test_reset_returns_to_the_real_state_when_the_fault_is_hardware(sim):
    assert (await status_line(sim)).startswith("Lane 4 Printer: Error ")
    await ssh_run(sim, "cd /catalina && printer_reset 4")
    assert (await status_line(sim)).startswith("Lane 4 Printer: Off Line ")

    async def back_to_error() -> bool:
        return (await status_line(sim)).startswith("Lane 4 Printer: Error ")

    await wait_for(back_to_error)
    assert (await status_line(sim)).endswith("Last error: E31 CUTTER FAULT")


@pytest.mark.parametrize("sim", ["paper_jam"], indirect=True)
async def test_a_jam_needs_clearing_before_paper_can_go_in(sim):
    assert "Printer: Error Paper: Jam" in await status_line(sim)
    async with api(sim) as http:
        refused = await http.post("/sim/lanes/4/actions", json={"action": "load_paper"})
        assert refused.status_code == 409
        assert "jam" in refused.json()["detail"]
        await http.post("/sim/lanes/4/actions", json={"action": "open_cover"})
        await http.post("/sim/lanes/4/actions", json={"action": "clear_jam"})
        assert "Printer: Off Line Paper: OK Cover: Open" in await status_line(sim)
        await http.post("/sim/lanes/4/actions", json={"action": "close_cover"})
    assert (await status_line(sim)).startswith("Lane 4 Printer: Idle ")


@pytest.mark.parametrize("sim", ["no_paper_stock"], indirect=True)
async def test_no_paper_in_stock_means_loading_paper_is_impossible(sim):
    async with api(sim) as http:
        refused = await http.post("/sim/lanes/4/actions", json={"action": "load_paper"})
    assert refused.status_code == 409
    assert "no paper rolls" in refused.json()["detail"]
    assert "Paper: Out" in await status_line(sim)


@pytest.mark.parametrize(
    "line",
    [
        "cd /catalina && printer_status 4; rm -rf /",
        "cd /catalina && printer_status 4 && reboot",
        "cd /catalina && printer_reset 4 | sh",
        "cd /catalina && printer_status $(reboot)",
        "cd /catalina && printer_status *",
        "cd /catalina && printer_status 0",
        "cd /catalina && printer_status 100",
        "cd /catalina && printer_status 04",
        "cd /catalina && printer_status",
        "cd /catalina && rm -rf /",
        "cd /catalina && lanes\nreboot",
        "printer_reset 4",
        "rm -rf /",
    ],
)
async def test_anything_off_the_allow_list_is_refused_and_changes_nothing(sim, line):
    async with api(sim) as http:
        before = (await http.get("/sim/state")).json()["stores"]
        result = await ssh_run(sim, line)
        after = (await http.get("/sim/state")).json()
    assert result.exit_status != 0
    assert result.stdout == ""
    assert result.stderr.startswith("ERROR ")
    assert after["stores"] == before
    assert after["commands"] == [
        {
            "chain": 1,
            "store": 1042,
            "command": line,
            "allowed": False,
            "exit_status": result.exit_status,
            "output": result.stderr.strip(),
        }
    ]


async def test_an_interactive_shell_is_refused(sim):
    store = next(iter(sim.state.stores.values()))
    async with asyncssh.connect(
        "127.0.0.1",
        store.ssh_port,
        known_hosts=str(sim.known_hosts_path),
        username="catalina",
        client_keys=None,
        config=None,
    ) as conn:
        process = await conn.create_process()
        completed = await asyncio.wait_for(process.wait(check=False), 10)
    assert completed.exit_status == 2
    assert "interactive shells are not allowed" in completed.stderr


def _banner_within(port: int, timeout_s: float) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as conn:
        conn.settimeout(timeout_s)
        try:
            return conn.recv(64)
        except TimeoutError:
            return b""


@pytest.mark.parametrize("sim", ["pc_unresponsive"], indirect=True)
async def test_a_hung_pc_accepts_tcp_but_never_answers_until_restarted(sim):
    port = next(iter(sim.state.stores.values())).ssh_port
    assert await asyncio.to_thread(_banner_within, port, 1.0) == b""
    async with api(sim) as http:
        response = await http.post("/sim/stores/1/1042/actions", json={"action": "restart_pc"})
    assert response.status_code == 200
    banner = await asyncio.to_thread(_banner_within, port, 5.0)
    assert banner.startswith(b"SSH-2.0-")
    assert "Lane 4 Printer: Idle" in await status_line(sim)
