"""Which database the records go to.

`DATABASE_URL` (or an explicit URL from config) wins; otherwise a SQLite file at
$TRUNKLINE_HOME/trunkline.db. Users write ordinary URLs (`sqlite:///...`,
`postgresql://...`); we pick the asyncio driver for them, because the store runs
on the call's event loop.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from agent.records.errors import DatabaseConfigError
from models.paths import trunkline_home

# Plain scheme -> the asyncio driver we ship (aiosqlite, psycopg 3).
_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "postgresql+psycopg2": "postgresql+psycopg",
    "postgresql+psycopg_async": "postgresql+psycopg",
}


def default_database_path() -> Path:
    return trunkline_home() / "trunkline.db"


def configured_url(url: str | None = None) -> str:
    """The URL in force: explicit, else $DATABASE_URL, else the default SQLite file."""
    chosen = url or os.environ.get("DATABASE_URL")
    if chosen:
        return chosen
    path = default_database_path()
    # Only the default location is ours to create; an explicit URL is used as given.
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def async_url(url: str) -> URL:
    """Parse `url` and switch it to the asyncio driver; DatabaseConfigError if unusable."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseConfigError(f"database URL {redact(url)!r} is malformed: {exc}") from None
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    if driver is None:
        supported = "sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
        raise DatabaseConfigError(
            f"database URL {redact(url)!r}: unsupported driver {parsed.drivername!r} "
            f"(use {supported})"
        )
    return parsed.set(drivername=driver)


def redact(url: str | URL) -> str:
    """The URL with its password hidden, for logs and error messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"
