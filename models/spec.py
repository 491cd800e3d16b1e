"""What a model is: kind, engine, where its files come from and their pinned hashes.

Parsed strictly from YAML (the embedded manifest and the operator registry), so a
typo in either is a clear RegistryError rather than a KeyError deep in an engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from models.errors import RegistryError

KINDS = ("stt", "llm", "tts", "vad", "turn")
Origin = Literal["embedded", "operator"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class FileSpec:
    path: str  # relative to the model's root, POSIX separators
    sha256: str
    size: int


@dataclass(frozen=True)
class PartSpec:
    package: str  # import name of the package holding this part
    path: str  # relative to the package directory
    sha256: str
    size: int


@dataclass(frozen=True)
class PackageSource:
    """Files inside an installed Python package (located, never imported)."""

    package: str
    root: str  # relative to the package directory
    entry: str  # relative to root; "." for a directory model
    distribution: str = ""
    requirements: str = ""  # file beside this module that pins the wheel(s)


@dataclass(frozen=True)
class PartsSource:
    """One file concatenated in order from parts in several packages, into the model cache."""

    output: str
    parts: tuple[PartSpec, ...]
    distribution: str = ""
    requirements: str = ""


@dataclass(frozen=True)
class SystemSource:
    """A binary on PATH, owned by the system package manager (not hashed)."""

    binary: str
    debian: str = ""


@dataclass(frozen=True)
class LocalSource:
    """An operator's own file or directory."""

    path: str  # absolute
    is_dir: bool


Source = PackageSource | PartsSource | SystemSource | LocalSource


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str
    engine: str
    source: Source
    origin: Origin
    default: bool = True
    files: tuple[FileSpec, ...] = ()
    description: str = ""
    licence: str = ""
    fallback: str = ""  # name of a model to use when this one cannot run


def check_name(name: str, what: str = "model name") -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise RegistryError(
            f"invalid {what} {name!r}: use 1-80 characters of a-z, 0-9, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise RegistryError(f"invalid model kind {kind!r}: expected one of {', '.join(KINDS)}")
    return kind


def parse_files(raw: Any, where: str) -> tuple[FileSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise RegistryError(f"{where}: 'files' must be a mapping of path -> {{sha256, size}}")
    return tuple(
        FileSpec(path=_rel_path(path, where), sha256=_sha(v, where), size=_size(v, where))
        for path, v in raw.items()
    )


def parse_parts(raw: Any, where: str) -> tuple[PartSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise RegistryError(f"{where}: 'parts' must be a non-empty list")
    parts = []
    for item in raw:
        if not isinstance(item, dict):
            raise RegistryError(f"{where}: each part needs package, path, sha256 and size")
        parts.append(
            PartSpec(
                package=_str(item, "package", where),
                path=_rel_path(_str(item, "path", where), where),
                sha256=_sha(item, where),
                size=_size(item, where),
            )
        )
    return tuple(parts)


def parse_source(raw: Any, where: str) -> Source:
    if not isinstance(raw, dict):
        raise RegistryError(f"{where}: 'source' must be a mapping with a 'type'")
    kind = raw.get("type")
    common = {
        "distribution": str(raw.get("distribution", "")),
        "requirements": str(raw.get("requirements", "")),
    }
    if kind == "package":
        return PackageSource(
            package=_str(raw, "package", where),
            root=_rel_path(raw.get("root", "."), where),
            entry=_rel_path(raw.get("entry", "."), where),
            **common,
        )
    if kind == "parts":
        return PartsSource(
            output=_plain_name(_str(raw, "output", where), where),
            parts=parse_parts(raw.get("parts"), where),
            **common,
        )
    if kind == "system":
        return SystemSource(binary=_str(raw, "binary", where), debian=str(raw.get("debian", "")))
    raise RegistryError(f"{where}: unknown source type {kind!r} (package, parts or system)")


def _str(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise RegistryError(f"{where}: '{key}' must be a non-empty string")
    return value


def _sha(raw: Any, where: str) -> str:
    value = raw.get("sha256") if isinstance(raw, dict) else None
    if not isinstance(value, str) or not _SHA256.match(value):
        raise RegistryError(f"{where}: 'sha256' must be 64 lowercase hex digits")
    return value


def _size(raw: Any, where: str) -> int:
    value = raw.get("size") if isinstance(raw, dict) else None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise RegistryError(f"{where}: 'size' must be a byte count")
    return value


def _rel_path(value: Any, where: str) -> str:
    # Paths in a manifest stay inside their root: no absolute paths, no "..".
    if not isinstance(value, str) or not value:
        raise RegistryError(f"{where}: paths must be non-empty strings")
    parts = value.split("/")
    if value.startswith("/") or ".." in parts or "\\" in value:
        raise RegistryError(f"{where}: path {value!r} must be relative and stay inside its root")
    return value


def _plain_name(value: str, where: str) -> str:
    if "/" in value or value in (".", ".."):
        raise RegistryError(f"{where}: {value!r} must be a plain file name")
    return value
