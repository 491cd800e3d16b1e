"""`trunkline apikey`: mint, list and revoke management-API keys.

`create` prints the new key on its last line, once: only its scrypt hash is
stored, so a lost key is revoked and replaced, never recovered.
"""

from __future__ import annotations

from datetime import datetime

import click

from agent.cli.db_session import run_in_session, url_option


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"


@click.group("apikey")
def apikey() -> None:
    """API keys for the management API (admin: read and write; read: GET only)."""


@apikey.command()
@url_option
@click.option("--scope", type=click.Choice(["admin", "read"]), required=True)
@click.option("--name", default="", help="What the key is for (shown by `apikey list`).")
def create(url: str | None, scope: str, name: str) -> None:
    """Create a key and print it (last line). It is shown only this once."""
    from agent.controlplane import apikeys

    new = run_in_session(url, lambda s: apikeys.create_key(s, scope=scope, name=name))
    click.echo(f"created API key {new.info.id} (scope {scope}, prefix {new.info.prefix})")
    click.echo("store it now: it cannot be shown again", err=True)
    click.echo(new.key)


@apikey.command("list")
@url_option
def list_(url: str | None) -> None:
    """List keys (never the keys themselves)."""
    from agent.controlplane import apikeys

    keys = run_in_session(url, apikeys.list_keys)
    header = ("ID", "PREFIX", "SCOPE", "CREATED", "LAST USED", "STATE", "NAME")
    click.echo("{:>4}  {:12}  {:5}  {:25}  {:25}  {:7}  {}".format(*header))
    for k in keys:
        state = "revoked" if k.revoked_at else "active"
        click.echo(
            f"{k.id:>4}  {k.prefix:12}  {k.scope:5}  {_when(k.created_at):25}  "
            f"{_when(k.last_used_at):25}  {state:7}  {k.name}"
        )


@apikey.command()
@url_option
@click.argument("key_id")
def revoke(url: str | None, key_id: str) -> None:
    """Revoke the key with id or prefix KEY_ID; it stops working at once."""
    from agent.controlplane import apikeys

    info = run_in_session(url, lambda s: apikeys.revoke_key(s, key_id))
    click.echo(f"revoked API key {info.id} (prefix {info.prefix}) at {_when(info.revoked_at)}")


if __name__ == "__main__":
    apikey()
