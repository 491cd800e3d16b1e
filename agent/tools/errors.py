"""Typed errors of the tools layer; messages are safe to log and to show an operator."""

from __future__ import annotations

from serving.base import BadInput


class ToolError(Exception):
    """A tool could not do its job."""


class ToolRefused(ToolError, BadInput):
    """The call itself is not allowed: unknown tool, bad or extra arguments."""


class StoreError(ToolError):
    """Something went wrong talking to a store PC."""


class StoreUnreachable(StoreError):
    """The store PC did not connect or did not answer in time."""


class HostKeyMismatch(StoreError):
    """The store PC's SSH host key is not the one in our known_hosts."""


class StoreOutputError(StoreError):
    """The store PC answered something our parser does not recognise."""


class StoreCommandFailed(StoreError):
    """The store PC refused the command (it should never happen with our allow-list)."""


class ApiError(ToolError):
    """A StoreMaster / ticket API call failed."""


class ApiAuthError(ApiError):
    """The API rejected our token."""


class ApiNotFound(ApiError):
    """The store or ticket does not exist."""
