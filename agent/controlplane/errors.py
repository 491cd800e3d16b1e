"""Typed errors of the control plane; the API maps each to one status code."""

from __future__ import annotations


class ControlPlaneError(Exception):
    """Base class: something about agent definitions or keys went wrong."""


class NotFound(ControlPlaneError, LookupError):
    """The addressed object does not exist (404)."""


class InvalidField(ControlPlaneError, ValueError):
    """A field names something missing or clashes with another row (422).

    `field` is the request body field at fault, so clients can point at it.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class InUse(ControlPlaneError):
    """Deleting this would break rows that depend on it (409)."""


class InvalidApiKey(ControlPlaneError):
    """No key, an unknown or malformed key, or a revoked one (401)."""
