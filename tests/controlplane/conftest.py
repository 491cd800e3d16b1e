"""Control-plane fixtures: a real SQLite file and the real PostgreSQL at 127.0.0.1:5432.

Each PostgreSQL test session gets its own uniquely named database, dropped at the
end; PostgreSQL being absent fails the tests with a message, it never skips them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from agent.controlplane import apikeys
from agent.controlplane.api import build_router
from agent.controlplane.db import ControlPlaneStore

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"
PG_URL = "postgresql://postgres@127.0.0.1:5432/{name}"


def _pg_connect(dbname: str = "postgres") -> psycopg.Connection:
    try:
        return psycopg.connect(
            PG_ADMIN.replace("dbname=postgres", f"dbname={dbname}"), autocommit=True
        )
    except psycopg.OperationalError as exc:
        pytest.fail(
            "PostgreSQL is not reachable at 127.0.0.1:5432 as user postgres (trust auth); "
            f"these tests need it running (Debian: apt-get install postgresql): {exc}",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    name = f"trunkline_cp_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with _pg_connect() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with _pg_connect() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'controlplane.db'}"
        return
    name = request.getfixturevalue("pg_database")
    yield PG_URL.format(name=name)
    # Each test starts from an empty database.
    with _pg_connect(name) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


def make_app(store: ControlPlaneStore) -> FastAPI:
    """An app that mounts the router the way `trunkline serve` does."""
    app = FastAPI(title="trunkline control plane (test)")
    app.include_router(build_router(store), prefix="/api")
    return app


@dataclass
class Api:
    """An HTTP client on the app, plus one key of each scope."""

    store: ControlPlaneStore
    client: httpx.AsyncClient
    admin_key: str
    read_key: str

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    @property
    def reader(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.read_key}"}


async def mint_key(store: ControlPlaneStore, scope: str) -> str:
    async with store.session() as session:
        return (await apikeys.create_key(session, scope=scope, name=f"test-{scope}")).key


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[Api]:
    async with ControlPlaneStore(db_url) as store:
        admin_key = await mint_key(store, "admin")
        read_key = await mint_key(store, "read")
        transport = httpx.ASGITransport(app=make_app(store))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://cp.test", timeout=30
        ) as client:
            yield Api(store=store, client=client, admin_key=admin_key, read_key=read_key)
