"""The control plane's database handle: engine, migrations, sessions.

Same URL rules as the call records (`agent.records.config`): `DATABASE_URL`, else
the SQLite file in $TRUNKLINE_HOME. Starting migrates to head, so a fresh install
needs no separate step; start is also done lazily on first use, so a router
mounted without a lifespan hook still works.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from agent.controlplane import models as _models  # noqa: F401  (registers the tables)
from agent.records import migrate
from agent.records.config import async_url, configured_url, redact


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")  # cascades and RESTRICT need it on SQLite
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cursor.close()


class ControlPlaneStore:
    """Owns one async engine; `session()` yields a session inside a transaction."""

    def __init__(self, url: str | None = None, *, migrate_on_start: bool = True) -> None:
        self.url = configured_url(url)
        self._migrate_on_start = migrate_on_start
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._start_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"ControlPlaneStore({redact(self.url)!r})"

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("ControlPlaneStore used before start()")
        return self._engine

    async def start(self) -> None:
        async with self._start_lock:
            if self._engine is not None:
                return
            engine = create_async_engine(async_url(self.url), pool_pre_ping=True)
            if engine.dialect.name == "sqlite":
                event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            try:
                if self._migrate_on_start:
                    await migrate.upgrade(engine)
            except BaseException:
                await engine.dispose()
                raise
            self._engine = engine
            self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
            self._sessions = None

    async def __aenter__(self) -> ControlPlaneStore:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed on success, rolled back on error."""
        if self._sessions is None:
            await self.start()
        assert self._sessions is not None
        async with self._sessions() as session, session.begin():
            yield session
