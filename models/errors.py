"""Errors of the model store.

Every message names the model, the path involved and how to fix it, because the
person reading it is usually an operator at a terminal, not a developer.
"""

from __future__ import annotations

from pathlib import Path


class ModelError(Exception):
    """A configured model cannot be used."""

    def __init__(self, message: str, *, name: str | None = None, path: Path | None = None):
        super().__init__(message)
        self.name = name
        self.path = path


class UnknownModel(ModelError):
    """No embedded or operator model has this name."""


class ModelMissing(ModelError):
    """The model (or one of its files, packages or binaries) is not on this machine."""


class ModelHashMismatch(ModelError):
    """A model file is present but its size or sha256 differs from the pinned one."""

    def __init__(
        self,
        message: str,
        *,
        name: str | None = None,
        path: Path | None = None,
        expected: str | None = None,
        actual: str | None = None,
    ):
        super().__init__(message, name=name, path=path)
        self.expected = expected
        self.actual = actual


class RegistryError(ModelError):
    """The manifest or the operator registry is malformed, or `add` got bad input."""


class InstallError(ModelError):
    """Installing an opt-in model's packages failed."""
