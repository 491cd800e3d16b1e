"""The embedded manifest (models/embedded.yaml), shipped inside the package."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from models.errors import RegistryError
from models.spec import (
    ModelSpec,
    check_kind,
    check_name,
    parse_files,
    parse_source,
)

PACKAGE_DIR = Path(__file__).resolve().parent
EMBEDDED_MANIFEST = PACKAGE_DIR / "embedded.yaml"


def requirements_file(name: str) -> Path:
    """A requirements file named in the manifest lives beside it."""
    return PACKAGE_DIR / name


@functools.cache
def load_embedded(path: Path = EMBEDDED_MANIFEST) -> dict[str, ModelSpec]:
    return parse_manifest(_read_yaml(path), str(path))


def parse_manifest(data: Any, where: str) -> dict[str, ModelSpec]:
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise RegistryError(f"{where}: expected a mapping with 'models: {{name: ...}}'")
    specs = {}
    for name, raw in data["models"].items():
        here = f"{where}: model {name!r}"
        check_name(name)
        if not isinstance(raw, dict):
            raise RegistryError(f"{here}: expected a mapping")
        specs[name] = ModelSpec(
            name=name,
            kind=check_kind(raw.get("kind")),
            engine=check_name(raw.get("engine"), "engine name"),
            source=parse_source(raw.get("source"), here),
            origin="embedded",
            default=bool(raw.get("default", True)),
            files=parse_files(raw.get("files"), here),
            description=str(raw.get("description", "")),
            licence=str(raw.get("licence", "")),
            fallback=str(raw.get("fallback", "")),
        )
    return specs


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise RegistryError(f"cannot read model manifest {path}: {e.strerror}", path=path) from e
    except yaml.YAMLError as e:
        raise RegistryError(f"model manifest {path} is not valid YAML: {e}", path=path) from e
