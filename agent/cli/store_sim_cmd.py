"""`trunkline store-sim`: the store simulator (store PCs over SSH + StoreMaster/ticket APIs)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host or int(port) > 65535:
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


@click.command("store-sim")
@click.option(
    "--ssh",
    "ssh_addr",
    default="127.0.0.1:2222",
    show_default=True,
    help="SSH HOST:PORT of the first store PC (more stores take the next ports)",
)
@click.option(
    "--http",
    "http_addr",
    default="127.0.0.1:8100",
    show_default=True,
    help="HTTP HOST:PORT for StoreMaster, tickets and /sim control",
)
@click.option(
    "--scenario",
    default="demo",
    show_default=True,
    help="built-in scenario name or a scenario YAML file",
)
@click.option(
    "--token", default="dev-token", show_default=True, help="bearer token the HTTP APIs require"
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=int,
    help="seed for timing jitter (0: exact scenario timings)",
)
@click.option(
    "--state-dir",
    default="~/.trunkline/storesim",
    show_default=True,
    type=click.Path(file_okay=False),
    help="keeps the SSH host key and known_hosts",
)
def store_sim(
    ssh_addr: str, http_addr: str, scenario: str, token: str, seed: int, state_dir: str
) -> None:
    """Run the store simulator until interrupted."""
    from agent.storesim.runner import StoreSim
    from agent.storesim.scenario import ScenarioError

    ssh_host, ssh_port = _host_port(ssh_addr)
    http_host, http_port = _host_port(http_addr)
    try:
        sim = StoreSim(
            scenario=scenario,
            state_dir=Path(state_dir).expanduser(),
            ssh_host=ssh_host,
            ssh_port=ssh_port,
            http_host=http_host,
            http_port=http_port,
            token=token,
            seed=seed,
        )
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        asyncio.run(_run(sim))
    except KeyboardInterrupt:
        pass
    except (OSError, RuntimeError) as exc:
        raise click.ClickException(f"store-sim could not start: {exc}") from exc


async def _run(sim) -> None:
    await sim.start()
    try:
        click.echo(f"store-sim: scenario {sim.state.scenario.get('name')} (seed {sim.seed})")
        for store in sim.state.stores.values():
            click.echo(
                f"store {store.chain}/{store.store} SSH {store.ssh_host}:{store.ssh_port} "
                f"sip {store.sip_uri}"
            )
        click.echo(f"HTTP {sim.http_url}")
        click.echo(f"token: {sim.token}")
        click.echo(f"known_hosts file: {sim.known_hosts_path}")
        for line in sim.known_hosts:
            click.echo(f"known_hosts: {line}")
        click.echo("ready", nl=True)
        # uvicorn handles SIGINT/SIGTERM: its task ends, and so do we.
        await sim._http_task
    finally:
        await sim.stop()
