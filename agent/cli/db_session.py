"""Shared by the CLI commands that work on the control-plane database (apikey, agents)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

T = TypeVar("T")

url_option = click.option(
    "--url", envvar="DATABASE_URL", help="Database URL (default: $TRUNKLINE_HOME/trunkline.db)."
)


def run_in_session(url: str | None, action: Callable[..., Awaitable[T]]) -> T:
    """Run `action(session)` in one transaction: a command that fails half-way changes nothing."""
    # Imported here so `trunkline --help` does not load SQLAlchemy.
    from agent.controlplane.db import ControlPlaneStore
    from agent.controlplane.errors import ControlPlaneError
    from agent.records.config import redact
    from agent.records.errors import RecordError

    async def main() -> T:
        async with ControlPlaneStore(url) as store, store.session() as session:
            return await action(session)

    try:
        return asyncio.run(main())
    except (ControlPlaneError, RecordError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"database {redact(url or '')}: {exc}") from None
