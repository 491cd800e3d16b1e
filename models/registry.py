"""The operator registry: $TRUNKLINE_HOME/models.yaml.

Operators register their own weights (`trunkline models add`), which may take the
name of an embedded model to replace it, and opt-in models they installed are
remembered here so `verify` keeps checking them.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from models import paths
from models.errors import ModelMissing, RegistryError
from models.hashing import sha256_file
from models.progress import ProgressFactory
from models.spec import (
    FileSpec,
    LocalSource,
    ModelSpec,
    check_kind,
    check_name,
    parse_files,
)


@dataclass
class Registry:
    models: dict[str, ModelSpec] = field(default_factory=dict)
    installed: list[str] = field(default_factory=list)  # opt-in embedded models
    raw_models: dict[str, Any] = field(default_factory=dict)  # as stored, for rewriting


def load(path: Path | None = None) -> Registry:
    path = path or paths.registry_path()
    if not path.exists():
        return Registry()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise RegistryError(f"cannot read model registry {path}: {e.strerror}", path=path) from e
    except yaml.YAMLError as e:
        raise RegistryError(
            f"model registry {path} is not valid YAML ({e}); fix or remove it", path=path
        ) from e
    if not isinstance(data, dict):
        raise RegistryError(f"model registry {path}: expected a mapping", path=path)
    raw_models = data.get("models") or {}
    installed = data.get("installed") or []
    if not isinstance(raw_models, dict) or not isinstance(installed, list):
        raise RegistryError(
            f"model registry {path}: 'models' must be a mapping, 'installed' a list", path=path
        )
    models = {
        name: _parse_entry(name, raw, f"{path}: model {name!r}") for name, raw in raw_models.items()
    }
    return Registry(models=models, installed=[str(n) for n in installed], raw_models=raw_models)


def add(
    name: str,
    kind: str,
    engine: str,
    model_path: Path,
    *,
    description: str = "",
    replace: bool = False,
    progress: ProgressFactory | None = None,
    path: Path | None = None,
) -> ModelSpec:
    """Hash the files at `model_path` and record them under `name`."""
    path = path or paths.registry_path()
    check_name(name)
    check_kind(kind)
    check_name(engine, "engine name")
    model_path = model_path.expanduser().absolute()
    if not model_path.exists():
        raise ModelMissing(f"model {name}: {model_path} does not exist", name=name, path=model_path)
    registry = load(path)
    if name in registry.models and not replace:
        raise RegistryError(
            f"model {name} is already registered (at {registry.models[name].source.path}); "
            "pass --replace to point it elsewhere",
            name=name,
            path=path,
        )
    files = _hash_files(name, model_path, progress)
    entry: dict[str, Any] = {
        "kind": kind,
        "engine": engine,
        "path": str(model_path),
        "type": "dir" if model_path.is_dir() else "file",
        "added": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "files": {f.path: {"sha256": f.sha256, "size": f.size} for f in files},
    }
    if description:
        entry["description"] = description
    registry.raw_models[name] = entry
    _write(path, registry.raw_models, registry.installed)
    return _parse_entry(name, entry, str(path))


def mark_installed(name: str, path: Path | None = None) -> None:
    path = path or paths.registry_path()
    registry = load(path)
    if name not in registry.installed:
        _write(path, registry.raw_models, [*registry.installed, name])


def _hash_files(name: str, model_path: Path, progress: ProgressFactory | None) -> list[FileSpec]:
    if model_path.is_dir():
        root = model_path
        members = sorted(p for p in model_path.rglob("*") if p.is_file())
        if not members:
            raise RegistryError(f"model {name}: directory {model_path} has no files", name=name)
    else:
        root = model_path.parent
        members = [model_path]
    try:
        return [
            FileSpec(
                path=p.relative_to(root).as_posix(),
                sha256=sha256_file(p, progress),
                size=p.stat().st_size,
            )
            for p in members
        ]
    except OSError as e:
        raise RegistryError(
            f"model {name}: cannot read {e.filename} ({e.strerror})", name=name, path=model_path
        ) from e


def _parse_entry(name: str, raw: Any, where: str) -> ModelSpec:
    check_name(name)
    if not isinstance(raw, dict):
        raise RegistryError(f"{where}: expected a mapping")
    model_path = raw.get("path")
    if not isinstance(model_path, str) or not os.path.isabs(model_path):
        raise RegistryError(f"{where}: 'path' must be an absolute path")
    files = parse_files(raw.get("files"), where)
    if not files:
        raise RegistryError(f"{where}: no files recorded; add it again with `trunkline models add`")
    layout = raw.get("type")
    if layout not in ("file", "dir"):
        raise RegistryError(f"{where}: 'type' must be 'file' or 'dir'")
    return ModelSpec(
        name=name,
        kind=check_kind(raw.get("kind")),
        engine=check_name(raw.get("engine"), "engine name"),
        source=LocalSource(path=model_path, is_dir=layout == "dir"),
        origin="operator",
        default=True,
        files=files,
        description=str(raw.get("description", "")),
    )


def _write(path: Path, raw_models: dict[str, Any], installed: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "# trunkline operator models: written by `trunkline models add` / `install`\n"
    text += yaml.safe_dump({"models": raw_models, "installed": installed}, sort_keys=False)
    # Atomic: a crash mid-write never leaves a half registry behind.
    fd, tmp = tempfile.mkstemp(prefix=".models.", suffix=".yaml", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
