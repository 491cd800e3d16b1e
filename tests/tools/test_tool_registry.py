"""The LLM-facing tools: JSON-schema functions bound to the call's store and ticket.

Injection attempts are refused before anything reaches the store PC; the simulator's
command log proves nothing ran."""

from __future__ import annotations

import json

import pytest

from agent.tools.errors import ToolRefused
from agent.tools.registry import ToolRegistry, ToolSpec
from agent.tools.store_commands import StoreCommand, build_command
from agent.tools.store_ssh import StoreSSH
from tests.storesim.simulator import api
from tests.tools.helpers import call_tools, store_address

LANE_TOOLS = ["check_printer_status", "send_test_print", "clean_print_head", "reset_printer"]


async def test_tools_are_closed_json_schema_functions(sim):
    async with StoreSSH(sim.known_hosts_path) as ssh:
        schemas = call_tools(sim, ssh).registry().schemas()
    names = [s["function"]["name"] for s in schemas]
    assert names == [
        *LANE_TOOLS,
        "list_lanes",
        "get_store_info",
        "get_ticket",
        "add_ticket_note",
        "update_ticket",
    ]
    for schema in schemas:
        assert schema["type"] == "function"
        assert schema["function"]["description"]
        assert schema["function"]["parameters"]["additionalProperties"] is False
    lane = schemas[0]["function"]["parameters"]["properties"]["lane"]
    assert (lane["type"], lane["minimum"], lane["maximum"]) == ("integer", 1, 99)


async def test_a_paper_out_call_through_the_tools(sim):
    """What the workflow does for ticket T1, tool by tool, with JSON results."""
    async with StoreSSH(sim.known_hosts_path) as ssh:
        tools = call_tools(sim, ssh).registry()
        ticket = await tools.execute("get_ticket", "{}")
        assert (ticket["lane"], ticket["issue"]) == (4, "paper_out")
        status = await tools.execute("check_printer_status", '{"lane": 4}')
        assert status == {
            "lane": 4,
            "status": "Off Line",
            "paper": "Out",
            "cover": "Closed",
            "ink": "OK",
            "last_error": "E07 PAPER OUT",
        }
        async with api(sim) as http:  # the POC loads a roll
            await http.post("/sim/lanes/4/actions", json={"action": "load_paper"})
        assert (await tools.execute("check_printer_status", {"lane": 4}))["status"] == "Idle"
        printed = await tools.execute("send_test_print", {"lane": 4})
        assert printed == {"lane": 4, "started": True, "not_ready_status": None}
        await tools.execute("add_ticket_note", {"text": "POC loaded a new roll; test print ok"})
        closed = await tools.execute(
            "update_ticket", {"status": "resolved", "resolution_notes": "paper loaded"}
        )
        json.dumps([ticket, status, printed, closed])
    assert sim.state.ticket("T1")["status"] == "resolved"
    assert [c["command"] for c in sim.state.command_log] == [
        "cd /catalina && printer_status 4",
        "cd /catalina && printer_status 4",
        "cd /catalina && coup 4",
    ]


INJECTIONS = [
    ("check_printer_status", {"lane": "4; rm -rf /"}),
    ("check_printer_status", {"lane": "4 && reboot"}),
    ("reset_printer", {"lane": "*"}),
    ("reset_printer", {"lane": 0}),
    ("reset_printer", {"lane": 100}),
    ("reset_printer", {"lane": -4}),
    ("send_test_print", {"lane": 4.5}),
    ("send_test_print", {"lane": True}),
    ("send_test_print", {"lane": [4, 5]}),
    ("send_test_print", {}),
    ("clean_print_head", {"lane": 4, "command": "reboot"}),
    ("list_lanes", {"lanes": "all"}),
    ("update_ticket", {"status": "closed"}),
    ("update_ticket", {"status": "resolved", "chain": 2}),
    ("run_shell", {"command": "rm -rf /"}),
    ("printer_reset", {"lane": 4}),
    ("check_printer_status", '{"lane": 4} ; reboot'),
    ("check_printer_status", "[4]"),
]


@pytest.mark.parametrize(("name", "arguments"), INJECTIONS)
async def test_injection_attempts_are_refused_before_anything_is_sent(sim, name, arguments):
    listener = next(iter(sim.listeners.values()))
    async with StoreSSH(sim.known_hosts_path) as ssh:
        tools = call_tools(sim, ssh).registry()
        with pytest.raises(ToolRefused) as excinfo:
            await tools.execute(name, arguments)
    assert name in str(excinfo.value) or "unknown tool" in str(excinfo.value)
    assert sim.state.command_log == []
    assert listener.accepted == 0
    assert sim.state.ticket("T1")["status"] == "new"


@pytest.mark.parametrize("lane", ["4; rm -rf /", "4 && reboot", 0, 100, True, 4.0, None, "4"])
def test_command_builder_accepts_only_validated_lanes(lane):
    with pytest.raises(ToolRefused, match="lane must be an integer 1-99"):
        build_command(StoreCommand.PRINTER_RESET, lane)


def test_command_builder_accepts_only_the_enum():
    with pytest.raises(ToolRefused, match="not an allow-listed"):
        build_command("printer_reset", 4)  # type: ignore[arg-type]
    assert build_command(StoreCommand.TEST_PRINT, 4) == "cd /catalina && coup 4"
    assert build_command(StoreCommand.LANES) == "cd /catalina && lanes"


async def test_store_ssh_refuses_bad_lanes_without_connecting(sim):
    listener = next(iter(sim.listeners.values()))
    async with StoreSSH(sim.known_hosts_path) as ssh:
        with pytest.raises(ToolRefused):
            await ssh.printer_reset(store_address(sim), "4; reboot")  # type: ignore[arg-type]
    assert listener.accepted == 0


def test_registry_refuses_open_schemas():
    async def nothing() -> None:
        return None

    with pytest.raises(ValueError, match="additionalProperties: false"):
        ToolRegistry([ToolSpec("loose", "x", {"type": "object"}, nothing)])


async def test_a_call_without_a_ticket_gets_no_ticket_tools(sim):
    async with StoreSSH(sim.known_hosts_path) as ssh:
        tools = call_tools(sim, ssh, ticket_id=None).registry()
        with pytest.raises(ToolRefused, match="unknown tool 'update_ticket'"):
            await tools.execute("update_ticket", {"status": "resolved"})
    assert "update_ticket" not in tools.names
