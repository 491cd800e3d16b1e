"""`trunkline store-sim`: the store simulator (store PCs over SSH + StoreMaster/ticket APIs)
and, by default, the store's phone: a simulated employee who answers the agent's calls."""

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
@click.option(
    "--phone/--no-phone",
    default=True,
    show_default=True,
    help="answer the agent's calls at the store's sip_uri as a simulated employee",
)
@click.option(
    "--phone-persona",
    default="cooperative",
    show_default=True,
    help="cooperative, busy, confused, frustrated or refuses-a-machine",
)
@click.option(
    "--phone-bind",
    default=None,
    help="SIP HOST:PORT of the phone [default: the first store's sip_uri, 127.0.0.1:5070]; "
    "the sip_uri StoreMaster reports stays the scenario's",
)
@click.option(
    "--phone-rtp-ports", default="31000-31999", show_default=True, help="phone's RTP LOW-HIGH"
)
def store_sim(
    ssh_addr: str,
    http_addr: str,
    scenario: str,
    token: str,
    seed: int,
    state_dir: str,
    phone: bool,
    phone_persona: str,
    phone_bind: str | None,
    phone_rtp_ports: str,
) -> None:
    """Run the store simulator (and the store's phone) until interrupted."""
    from agent.storesim.personas import PersonaError, get_persona
    from agent.storesim.runner import StoreSim
    from agent.storesim.scenario import ScenarioError

    ssh_host, ssh_port = _host_port(ssh_addr)
    http_host, http_port = _host_port(http_addr)
    phone_options = None
    if phone:
        try:
            get_persona(phone_persona)
        except PersonaError as exc:
            raise click.BadParameter(str(exc), param_hint="--phone-persona") from None
        phone_options = (phone_persona, phone_bind, _port_range(phone_rtp_ports))
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
        asyncio.run(_run(sim, phone_options))
    except KeyboardInterrupt:
        pass
    except (OSError, RuntimeError) as exc:
        raise click.ClickException(f"store-sim could not start: {exc}") from exc


def _port_range(value: str) -> tuple[int, int]:
    low, sep, high = value.partition("-")
    if not sep or not low.isdigit() or not high.isdigit() or not 0 < int(low) <= int(high) < 65536:
        raise click.BadParameter(f"expected LOW-HIGH ports, got {value!r}")
    return int(low), int(high)


async def _start_phone(sim, persona: str, bind: str | None, rtp_ports: tuple[int, int]):
    """The store's phone, or None with the reason on stderr: the simulator itself is still
    useful without it (and another simulator may already own the phone's port)."""
    import models
    from agent.storesim.phone import PhoneOptions, StorePhone, sip_bind_of
    from serving.base import EngineError
    from serving.stt.faster_whisper_engine import FasterWhisperSTT
    from telephony.sip_endpoint import SipError

    first = next(iter(sim.state.stores.values()))
    address = _host_port(bind) if bind else sip_bind_of(first.sip_uri)
    try:
        stt = FasterWhisperSTT(models.resolve("whisper-tiny.en"), cpu_threads=1)
        phone = StorePhone(
            sim.http_url,
            sim.token,
            stt,
            PhoneOptions(bind=address, rtp_ports=rtp_ports, persona=persona),
        )
        await phone.start()
    except (models.ModelError, EngineError, SipError, OSError, RuntimeError) as exc:
        click.echo(
            f"store-sim: phone not started ({exc}); use --no-phone, or free "
            f"{address[0]}:{address[1]}, or run `trunkline models prepare`",
            err=True,
        )
        return None
    return phone


async def _run(sim, phone_options) -> None:
    await sim.start()
    phone = None
    try:
        if phone_options is not None:
            phone = await _start_phone(sim, *phone_options)
        click.echo(f"store-sim: scenario {sim.state.scenario.get('name')} (seed {sim.seed})")
        for store in sim.state.stores.values():
            click.echo(
                f"store {store.chain}/{store.store} SSH {store.ssh_host}:{store.ssh_port} "
                f"sip {store.sip_uri}"
            )
        click.echo(f"HTTP {sim.http_url}")
        if phone is not None:
            host, port = phone.options.bind
            click.echo(f"phone: sip:{host}:{port} answering as {phone.persona.name}")
        click.echo(f"token: {sim.token}")
        click.echo(f"known_hosts file: {sim.known_hosts_path}")
        for line in sim.known_hosts:
            click.echo(f"known_hosts: {line}")
        click.echo("ready", nl=True)
        # uvicorn handles SIGINT/SIGTERM: its task ends, and so do we.
        await sim._http_task
    finally:
        if phone is not None:
            await phone.stop()
        await sim.stop()
