"""API keys: hashed at rest, scopes enforced, CLI-minted keys work and revoke at once."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
from sqlalchemy import select

from agent.controlplane.db import ControlPlaneStore
from agent.controlplane.models import ApiKey
from tests.controlplane.conftest import Api, make_app


async def test_missing_invalid_and_wrong_scope_keys_are_refused(api: Api) -> None:
    c = api.client
    missing = await c.get("/api/agents")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    for header in (
        "Bearer tk_000000000000_" + "A" * 43,  # well-formed, never issued
        "Bearer " + api.admin_key[:-1] + ("B" if api.admin_key[-1] != "B" else "C"),
        "Bearer not-a-key",
        "Basic " + api.admin_key,
    ):
        refused = await c.get("/api/agents", headers={"Authorization": header})
        assert refused.status_code == 401, header

    # A read key reads but cannot write; an admin key does both.
    assert (await c.get("/api/agents", headers=api.reader)).status_code == 200
    for method, path in [
        ("POST", "/api/agents"),
        ("PATCH", "/api/agents/1"),
        ("DELETE", "/api/agents/1"),
        ("PUT", "/api/agents/1/goals/1"),
        ("POST", "/api/templates"),
        ("DELETE", "/api/domains/1"),
    ]:
        forbidden = await c.request(method, path, json={"name": "x"}, headers=api.reader)
        assert forbidden.status_code == 403, (method, path)
        assert "needs 'admin'" in forbidden.json()["detail"]
        unauthenticated = await c.request(method, path, json={"name": "x"})
        assert unauthenticated.status_code == 401, (method, path)
    # Nothing was written by the refused requests.
    assert (await c.get("/api/agents", headers=api.admin)).json()["total"] == 0

    # Keys are stored hashed: the secret appears nowhere in the table.
    async with api.store.session() as session:
        rows = (await session.scalars(select(ApiKey))).all()
    assert len(rows) == 2
    for row in rows:
        stored = " ".join(str(getattr(row, col)) for col in ("name", "prefix", "key_hash"))
        assert api.admin_key.split("_", 2)[2] not in stored
        assert api.read_key.split("_", 2)[2] not in stored
        assert row.key_hash.startswith("scrypt$")
        assert row.last_used_at is not None  # both keys were used above


REPO = Path(__file__).resolve().parents[2]


async def _apikey_cli(*args: str) -> tuple[int, str, str]:
    """`trunkline apikey ARGS` in its own process, as an operator runs it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent.cli.apikey_cmd",
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_created_key_works_and_revoking_it_locks_it_out(db_url: str) -> None:
    rc, out, err = await _apikey_cli("create", "--url", db_url, "--scope", "admin", "--name", "ops")
    assert rc == 0, out + err
    key = out.strip().splitlines()[-1]  # printed last, once
    assert key.startswith("tk_")
    assert "cannot be shown again" in err
    rc, out, err = await _apikey_cli("create", "--url", db_url, "--scope", "read")
    assert rc == 0, out + err
    read_key = out.strip().splitlines()[-1]

    async with ControlPlaneStore(db_url) as store:
        transport = httpx.ASGITransport(app=make_app(store))
        async with httpx.AsyncClient(transport=transport, base_url="http://cp.test") as client:
            admin = {"Authorization": f"Bearer {key}"}
            made = await client.post("/api/goals", json={"name": "qualify_lead"}, headers=admin)
            assert made.status_code == 201, made.text
            readable = await client.get(
                "/api/goals", headers={"Authorization": f"Bearer {read_key}"}
            )
            assert readable.json()["items"][0]["name"] == "qualify_lead"
            refused = await client.post(
                "/api/goals", json={"name": "x"}, headers={"Authorization": f"Bearer {read_key}"}
            )
            assert refused.status_code == 403

            rc, listing, err = await _apikey_cli("list", "--url", db_url)
            assert rc == 0, listing + err
            prefix = key.split("_")[1]
            assert prefix in listing and "ops" in listing
            assert key not in listing and key.split("_", 2)[2] not in listing

            rc, out, err = await _apikey_cli("revoke", "--url", db_url, prefix)
            assert rc == 0, out + err
            locked = await client.get("/api/goals", headers=admin)
            assert locked.status_code == 401
            assert "revoked" in locked.json()["detail"]

    rc, listing, _ = await _apikey_cli("list", "--url", db_url)
    assert "revoked" in listing
    rc, out, err = await _apikey_cli("revoke", "--url", db_url, "ffffffffffff")
    assert rc != 0 and "no API key" in err
    rc, out, err = await _apikey_cli("create", "--url", db_url, "--scope", "root")
    assert rc != 0 and "root" in err
