"""StoreMaster, ticket and sim-control APIs over real HTTP: auth, lookups, updates, errors."""

from __future__ import annotations

import pytest

from tests.storesim.simulator import api


@pytest.mark.parametrize("token", [None, "wrong-token"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/stores/1/1042"),
        ("GET", "/tickets/T1"),
        ("GET", "/sim/state"),
        ("POST", "/sim/reset"),
        ("PATCH", "/tickets/T1"),
    ],
)
async def test_every_route_needs_the_bearer_token(sim, token, method, path):
    async with api(sim, token) as http:
        response = await http.request(method, path, json={"status": "resolved"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert sim.state.ticket("T1")["status"] == "new"


async def test_a_basic_auth_header_is_not_a_bearer_token(sim):
    async with api(sim, None) as http:
        response = await http.get("/stores/1/1042", headers={"Authorization": "Basic dGVzdA=="})
    assert response.status_code == 401


async def test_storemaster_returns_the_store_with_its_ssh_endpoint(sim):
    async with api(sim) as http:
        store = (await http.get("/stores/1/1042")).json()
    ssh_port = next(iter(sim.state.stores.values())).ssh_port
    assert store == {
        "chain": 1,
        "store": 1042,
        "name": "FreshMart Riverside",
        "timezone": "America/Chicago",
        "address": "1200 River Rd, Springfield, IL",
        "ip_address": "127.0.0.1",
        "ssh_port": ssh_port,
        "phone": "+1-217-555-0142",
        "sip_uri": "sip:store1042@127.0.0.1:5070",
        "poc_name": "Dana",
        "lanes": [1, 2, 3, 4, 5],
    }


@pytest.mark.parametrize("path", ["/stores/1/9999", "/stores/2/1042", "/tickets/T404"])
async def test_unknown_store_or_ticket_is_404(sim, path):
    async with api(sim) as http:
        response = await http.get(path)
    assert response.status_code == 404
    assert "unknown" in response.json()["detail"]


async def test_demo_ticket_t1_is_lane_4_out_of_paper(sim):
    async with api(sim) as http:
        ticket = (await http.get("/tickets/T1")).json()
    assert ticket["chain"] == 1 and ticket["store"] == 1042 and ticket["lane"] == 4
    assert ticket["issue"] == "paper_out"
    assert ticket["status"] == "new"
    assert ticket["printer_status"].endswith("Last error: E07 PAPER OUT")


async def test_ticket_can_be_updated_and_noted(sim):
    async with api(sim) as http:
        patched = await http.patch(
            "/tickets/T1", json={"status": "resolved", "resolution_notes": "loaded paper"}
        )
        noted = await http.post("/tickets/T1/notes", json={"text": "POC loaded a new roll"})
        ticket = (await http.get("/tickets/T1")).json()
    assert patched.status_code == 200 and noted.status_code == 201
    assert ticket["status"] == "resolved"
    assert ticket["resolution_notes"] == "loaded paper"
    assert [n["text"] for n in ticket["notes"]] == ["POC loaded a new roll"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", "/tickets/T1", {"status": "done"}),
        ("PATCH", "/tickets/T1", {"status": "resolved", "owner": "me"}),
        ("PATCH", "/tickets/T1", ["resolved"]),
        ("POST", "/tickets/T1/notes", {"text": ""}),
        ("POST", "/tickets/T1/notes", {}),
        ("POST", "/sim/lanes/4/actions", {"action": "rm -rf /"}),
        ("POST", "/sim/lanes/4/actions", {"action": "load_paper", "lane": 5}),
        ("POST", "/sim/stores/1/1042/actions", {"action": "reboot_everything"}),
    ],
)
async def test_bad_bodies_are_422_and_change_nothing(sim, method, path, body):
    async with api(sim) as http:
        before = (await http.get("/sim/state")).json()
        response = await http.request(method, path, json=body)
        after = (await http.get("/sim/state")).json()
    assert response.status_code == 422
    assert after == before


async def test_non_json_body_is_422(sim):
    async with api(sim) as http:
        response = await http.patch(
            "/tickets/T1", content=b"{not json", headers={"content-type": "application/json"}
        )
    assert response.status_code == 422


async def test_action_on_an_unknown_lane_is_404(sim):
    async with api(sim) as http:
        response = await http.post("/sim/lanes/9/actions", json={"action": "load_paper"})
    assert response.status_code == 404


async def test_reset_restores_the_scenario(sim):
    async with api(sim) as http:
        await http.post("/sim/lanes/4/actions", json={"action": "load_paper"})
        await http.patch("/tickets/T1", json={"status": "resolved"})
        state = (await http.post("/sim/reset")).json()
    assert state["stores"][0]["printers"][3]["paper"] == "Out"
    assert state["tickets"][0]["status"] == "new"
    assert state["commands"] == []
