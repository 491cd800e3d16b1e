"""The on-prem model store.

Every model trunkline runs is named here and pinned by sha256: embedded defaults
that ship as Python wheels (models/embedded.yaml), opt-in ones installed with
`trunkline models install`, and operator models registered with `trunkline models
add` ($TRUNKLINE_HOME/models.yaml), which may override embedded names.

    path = models.resolve("whisper-tiny.en")   # verified, or a ModelError saying why not

Nothing here downloads anything or imports a model's package.
"""

from __future__ import annotations

from pathlib import Path

from models.errors import (
    InstallError,
    ModelError,
    ModelHashMismatch,
    ModelMissing,
    RegistryError,
    UnknownModel,
)
from models.hashing import clear_cache
from models.progress import ProgressFactory, stderr_progress
from models.spec import KINDS, ModelSpec
from models.store import Catalog, ModelCheck, ModelEntry, VerifyReport

__all__ = [
    "KINDS",
    "Catalog",
    "InstallError",
    "ModelCheck",
    "ModelEntry",
    "ModelError",
    "ModelHashMismatch",
    "ModelMissing",
    "ModelSpec",
    "RegistryError",
    "UnknownModel",
    "VerifyReport",
    "clear_cache",
    "get",
    "list_models",
    "resolve",
    "verify",
]


def resolve(name: str, progress: ProgressFactory | None = stderr_progress) -> Path:
    """Verified local path of model `name` (a file, or a directory for whisper).

    Files are hashed once per process (cached by path, size and mtime); an embedded
    model assembled from parts is built into the model cache on first use.
    Raises ModelError (UnknownModel, ModelMissing, ModelHashMismatch, RegistryError).
    """
    return Catalog().resolve(name, progress)


def get(name: str) -> ModelSpec:
    """The spec (kind, engine, source, pinned files) of model `name`; UnknownModel if none."""
    return Catalog().get(name)


def list_models() -> list[ModelEntry]:
    """Every known model (embedded and operator), with a cheap presence check."""
    return Catalog().entries()


def verify(
    names: list[str] | None = None, progress: ProgressFactory | None = stderr_progress
) -> VerifyReport:
    """Hash-check `names`, or every configured model; never raises for a bad model."""
    return Catalog().verify(names, progress)
