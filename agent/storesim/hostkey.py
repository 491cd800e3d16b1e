"""The simulator's SSH host key: generated once, kept in the state directory, so the
agent's known_hosts entry stays valid across restarts."""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh

DEFAULT_STATE_DIR = Path("~/.trunkline/storesim")
HOST_KEY_FILE = "ssh_host_ed25519_key"
KNOWN_HOSTS_FILE = "known_hosts"


def load_or_create_host_key(state_dir: Path) -> asyncssh.SSHKey:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / HOST_KEY_FILE
    if path.exists():
        return asyncssh.read_private_key(str(path))
    key = asyncssh.generate_private_key("ssh-ed25519")
    # Written 0600 from the start: a private key must never be readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.export_private_key())
    return key


def known_hosts_line(key: asyncssh.SSHKey, host: str, port: int) -> str:
    pattern = host if port == 22 else f"[{host}]:{port}"
    public = key.export_public_key("openssh").decode().split()
    return f"{pattern} {public[0]} {public[1]}"


def write_known_hosts(state_dir: Path, lines: list[str]) -> Path:
    path = state_dir / KNOWN_HOSTS_FILE
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path
