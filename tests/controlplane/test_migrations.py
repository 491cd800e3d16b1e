"""Migration 0002 on SQLite and PostgreSQL: up, down to 0001 (call records kept), up again."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import agent.controlplane.models  # noqa: F401  (puts the control-plane tables on Base)
from agent.records import migrate
from agent.records.config import async_url
from agent.records.models import Base

CONTROL_PLANE_TABLES = {
    "agent_templates",
    "agent_configs",
    "conversation_goals",
    "agent_instructions",
    "domain_knowledge",
    "agent_goals",
    "agent_domains",
    "voices",
    "api_keys",
}


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: set(inspect(c).get_table_names()))


async def test_0002_goes_up_and_down_and_matches_the_models(db_url: str) -> None:
    engine = create_async_engine(async_url(db_url))
    try:
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == "0002_control_plane"
        assert CONTROL_PLANE_TABLES <= await _tables(engine)
        async with engine.connect() as conn:
            # What the migration built is exactly what the ORM models describe.
            diffs = await conn.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata
                )
            )
        assert diffs == []

        # A call recorded before the downgrade must survive it: 0002 owns only its tables.
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO calls (id, direction, caller, callee, started_at, metadata) "
                    "VALUES ('c1', 'inbound', 'sip:a@127.0.0.1', '', CURRENT_TIMESTAMP, '{}')"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO agent_templates (name, voice_config, created_at) "
                    "VALUES ('support', '{}', CURRENT_TIMESTAMP)"
                )
            )
        await migrate.downgrade(engine, "0001_call_records")
        assert await migrate.current_revision(engine) == "0001_call_records"
        tables = await _tables(engine)
        assert not CONTROL_PLANE_TABLES & tables
        assert {"calls", "turns", "tool_calls"} <= tables
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT id FROM calls"))).scalars().all() == ["c1"]

        await migrate.upgrade(engine)  # and up again, cleanly
        assert await migrate.current_revision(engine) == "0002_control_plane"
        assert CONTROL_PLANE_TABLES <= await _tables(engine)
        await migrate.downgrade(engine, "base")
        assert await migrate.current_revision(engine) is None
        assert not (CONTROL_PLANE_TABLES | {"calls"}) & await _tables(engine)
    finally:
        await engine.dispose()
