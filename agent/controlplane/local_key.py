"""The local operator's API key, so the CLI on the serving machine needs no setup.

`trunkline serve` makes sure one admin key named `local-cli` exists and that its
plaintext sits in $TRUNKLINE_HOME/cli.key (mode 0600). `trunkline call`, `dial` and
`simulate` on the same machine read it when $TRUNKLINE_API_KEY is not set. Like a
kubeconfig, whoever can read that file is the local admin; delete the file and restart
to rotate it (the old `local-cli` keys are revoked then).
"""

from __future__ import annotations

import os
from pathlib import Path

from models.paths import trunkline_home

API_KEY_ENV = "TRUNKLINE_API_KEY"
KEY_NAME = "local-cli"
KEY_FILE = "cli.key"


def key_path() -> Path:
    return trunkline_home() / KEY_FILE


def cli_api_key(explicit: str | None = None) -> str | None:
    """The key a CLI command sends: --api-key, else $TRUNKLINE_API_KEY, else cli.key."""
    if explicit:
        return explicit
    from_env = os.environ.get(API_KEY_ENV, "").strip()
    if from_env:
        return from_env
    try:
        return key_path().read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


async def ensure_local_key(store: object) -> Path:
    """Keep cli.key valid: reuse the key in it, else mint a new one (revoking lost ones)."""
    from agent.controlplane import apikeys
    from agent.controlplane.errors import InvalidApiKey

    path = key_path()
    try:
        current = path.read_text(encoding="utf-8").strip()
    except OSError:
        current = ""
    async with store.session() as session:  # type: ignore[attr-defined]
        if current:
            try:
                info = await apikeys.authenticate(session, current)
                if info.scope == "admin":
                    return path
            except InvalidApiKey:
                pass
        for old in await apikeys.list_keys(session):
            if old.name == KEY_NAME and old.revoked_at is None:
                await apikeys.revoke_key(session, str(old.id))
        new = await apikeys.create_key(session, scope="admin", name=KEY_NAME)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    # Created 0600 from the start: the key must never be readable by others.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(new.key + "\n")
    os.replace(temporary, path)
    return path
