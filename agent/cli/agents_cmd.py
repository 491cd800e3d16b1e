"""`trunkline agents`: agent definitions as YAML files (apply, export, list, examples).

`apply -f agent.yaml` is declarative and idempotent (see agent.controlplane.agentfile):
keep agents in git, apply them in CI, export what was built through the API.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from agent.cli.db_session import run_in_session, url_option

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


@click.group("agents")
def agents() -> None:
    """Agents defined in YAML: apply files, export agents, list them."""


@agents.command("apply")
@url_option
@click.option(
    "-f",
    "--file",
    "files",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    help="Agent YAML file (repeatable; a file may hold several agents).",
)
@click.option(
    "--example",
    "examples",
    multiple=True,
    help="A packaged example agent by name (repeatable; see `trunkline agents examples`).",
)
def apply_(url: str | None, files: tuple[Path, ...], examples: tuple[str, ...]) -> None:
    """Create or update the agents in FILE(s) to match them exactly."""
    from agent.controlplane import agentfile
    from agent.controlplane.examples import UnknownExample, example_path

    if not files and not examples:
        raise click.UsageError("give at least one -f FILE or --example NAME")
    try:
        paths = [*files, *(example_path(name) for name in examples)]
    except UnknownExample as exc:
        raise click.BadParameter(str(exc), param_hint="--example") from None
    specs = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise click.ClickException(f"{path}: cannot read: {exc}") from None
        try:
            specs.extend(agentfile.parse(text, source=str(path)))
        except agentfile.AgentFileError as exc:
            raise click.ClickException(str(exc)) from None

    async def apply_all(session: AsyncSession) -> list[tuple[str, int, bool]]:
        return [(spec.name, *await agentfile.apply(session, spec)) for spec in specs]

    for name, agent_id, created in run_in_session(url, apply_all):
        click.echo(f"agent {agent_id} {name!r} {'created' if created else 'updated'}")


@agents.command("export")
@url_option
@click.argument("names", nargs=-1)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here instead of stdout.",
)
def export_(url: str | None, names: tuple[str, ...], output: Path | None) -> None:
    """Export agents NAMES (default: all) as YAML that `agents apply` accepts."""
    from sqlalchemy import select

    from agent.controlplane import agentfile
    from agent.controlplane.models import AgentConfig

    async def export_all(session: AsyncSession) -> list[dict[str, Any]]:
        query = select(AgentConfig.id, AgentConfig.name).order_by(AgentConfig.id)
        if names:
            query = query.where(AgentConfig.name.in_(names))
        rows = (await session.execute(query)).all()
        missing = set(names) - {name for _, name in rows}
        if missing:
            raise agentfile.AgentFileError(f"no agent named {', '.join(sorted(missing))}")
        return [await agentfile.export(session, agent_id) for agent_id, _ in rows]

    text = agentfile.dump(run_in_session(url, export_all))
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)


@agents.command("examples")
@click.option("--path", "name", default=None, help="Print only this example's file path.")
def examples_(name: str | None) -> None:
    """List the example agents shipped with trunkline, with their file paths."""
    from agent.controlplane.examples import UnknownExample, example_names, example_path

    if name is not None:
        try:
            click.echo(example_path(name))
        except UnknownExample as exc:
            raise click.BadParameter(str(exc), param_hint="--path") from None
        return
    for example in example_names():
        click.echo(f"{example:24}  {example_path(example)}")


@agents.command("list")
@url_option
def list_(url: str | None) -> None:
    """List agents with their template and voice."""
    from sqlalchemy import select

    from agent.controlplane.models import AgentConfig, AgentTemplate

    async def rows(session: AsyncSession) -> list[Any]:
        query = (
            select(AgentConfig.id, AgentConfig.name, AgentTemplate.name, AgentConfig.voice_id)
            .outerjoin(AgentTemplate, AgentTemplate.id == AgentConfig.template_id)
            .order_by(AgentConfig.id)
        )
        return list((await session.execute(query)).all())

    click.echo("{:>4}  {:30}  {:24}  {}".format("ID", "NAME", "TEMPLATE", "VOICE"))
    for agent_id, name, template, voice in run_in_session(url, rows):
        click.echo(f"{agent_id:>4}  {name:30}  {template or '-':24}  {voice or '-'}")


if __name__ == "__main__":
    agents()
