"""The `trunkline` command line.

Each subcommand lives in its own module under `agent.cli` and is imported only
when it is invoked, so `trunkline --help` stays fast and a broken heavy import in
one command never takes the others down.
"""

from __future__ import annotations

import importlib

import click

# command name -> "module:attribute" of a click.Command
COMMANDS: dict[str, str] = {
    "models": "agent.cli.models_cmd:models",
    "serve": "agent.cli.serve_cmd:serve",
    "echo-test": "agent.cli.echo_test_cmd:echo_test",
    "db": "agent.records.cli:db",
    "call": "agent.cli.call_cmd:call",
    "simulate": "agent.cli.simulate_cmd:simulate",
    "apikey": "agent.cli.apikey_cmd:apikey",
    "agents": "agent.cli.agents_cmd:agents",
    "store-sim": "agent.cli.store_sim_cmd:store_sim",
    "voices": "agent.cli.voices_cmd:voices",
    "dial": "agent.cli.dial_cmd:dial",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)


@click.group(cls=LazyGroup)
@click.version_option(package_name="trunkline")
def cli() -> None:
    """trunkline: a self-hosted voice agent stack."""


def main() -> None:
    cli()
