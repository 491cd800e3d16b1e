"""StoreMaster and ticket clients against the simulator's HTTP API."""

from __future__ import annotations

import logging

import pytest

from agent.tools.api_clients import StoreMasterClient, TicketClient, load_token
from agent.tools.errors import ApiAuthError, ApiError, ApiNotFound
from tests.storesim.simulator import TOKEN, free_port


async def test_storemaster_and_tickets_round_trip(sim):
    async with StoreMasterClient(sim.http_url, TOKEN) as storemaster:
        store = await storemaster.get_store(1, 1042)
    assert store["sip_uri"] == "sip:store1042@127.0.0.1:5070"
    async with TicketClient(sim.http_url, TOKEN) as tickets:
        await tickets.update("T1", status="in_progress")
        await tickets.add_note("T1", "calling the store")
        ticket = await tickets.get("T1")
    assert ticket["status"] == "in_progress"
    assert ticket["notes"][0]["text"] == "calling the store"


async def test_wrong_token_is_an_auth_error_that_never_shows_the_token(sim, caplog):
    caplog.set_level(logging.DEBUG)
    client = TicketClient(sim.http_url, "s3cret-wrong")
    with pytest.raises(ApiAuthError) as excinfo:
        await client.get("T1")
    await client.close()
    assert "s3cret-wrong" not in str(excinfo.value)
    assert "s3cret-wrong" not in repr(client._http.auth)
    assert "s3cret-wrong" not in caplog.text


async def test_unknown_store_and_ticket_are_not_found(sim):
    async with StoreMasterClient(sim.http_url, TOKEN) as storemaster:
        with pytest.raises(ApiNotFound, match="unknown"):
            await storemaster.get_store(1, 9999)
    async with TicketClient(sim.http_url, TOKEN) as tickets:
        with pytest.raises(ApiNotFound):
            await tickets.get("T404")
        with pytest.raises(ApiError, match="HTTP 422"):
            await tickets.update("T1", status="done")  # type: ignore[arg-type]
        with pytest.raises(ApiError, match="bad ticket id"):
            await tickets.get("../stores/1/1042")


async def test_an_api_that_is_down_is_a_clear_error():
    async with TicketClient(f"http://127.0.0.1:{free_port()}", TOKEN, timeout_s=2) as tickets:
        with pytest.raises(ApiError, match="ConnectError"):
            await tickets.get("T1")


def test_token_comes_from_argument_file_or_env(tmp_path, monkeypatch):
    monkeypatch.delenv("TRUNKLINE_STORE_API_TOKEN", raising=False)
    monkeypatch.delenv("TRUNKLINE_STORE_API_TOKEN_FILE", raising=False)
    with pytest.raises(ApiAuthError, match="no store API token"):
        load_token()
    monkeypatch.setenv("TRUNKLINE_STORE_API_TOKEN", "from-env")
    assert load_token() == "from-env"
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    assert load_token(token_file=token_file) == "from-file"
    monkeypatch.setenv("TRUNKLINE_STORE_API_TOKEN_FILE", str(token_file))
    assert load_token() == "from-file"
    assert load_token("explicit") == "explicit"
    with pytest.raises(ApiAuthError, match="cannot read"):
        load_token(token_file=tmp_path / "missing")
