"""`trunkline db`: migrate the records database by hand (the agent also does it on start).

Also runnable without the CLI registration: `python -m agent.records.cli upgrade`.
"""

from __future__ import annotations

import asyncio

import click

from agent.records.config import async_url, configured_url, redact


async def _with_engine(url: str | None, action: str, revision: str) -> str | None:
    from sqlalchemy.ext.asyncio import create_async_engine

    from agent.records import migrate

    engine = create_async_engine(async_url(configured_url(url)))
    try:
        if action == "upgrade":
            await migrate.upgrade(engine, revision)
        elif action == "downgrade":
            await migrate.downgrade(engine, revision)
        return await migrate.current_revision(engine)
    finally:
        await engine.dispose()


def _run(url: str | None, action: str, revision: str = "head") -> None:
    shown = redact(configured_url(url))
    try:
        current = asyncio.run(_with_engine(url, action, revision))
    except Exception as exc:
        raise click.ClickException(f"{action} failed on {shown}: {exc}") from exc
    click.echo(f"{shown}: at revision {current or 'base (empty)'}")


_url_option = click.option(
    "--url", envvar="DATABASE_URL", help="Database URL (default: $TRUNKLINE_HOME/trunkline.db)."
)


@click.group("db")
def db() -> None:
    """Call-records database: schema migrations."""


@db.command()
@_url_option
@click.argument("revision", default="head")
def upgrade(url: str | None, revision: str) -> None:
    """Migrate up to REVISION (default: head)."""
    _run(url, "upgrade", revision)


@db.command()
@_url_option
@click.argument("revision", default="base")
def downgrade(url: str | None, revision: str) -> None:
    """Migrate down to REVISION (default: base, i.e. drop the records tables)."""
    _run(url, "downgrade", revision)


@db.command()
@_url_option
def current(url: str | None) -> None:
    """Show the schema revision the database is at."""
    _run(url, "current")


if __name__ == "__main__":
    db()
