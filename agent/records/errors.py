"""Typed errors of the call-record store."""

from __future__ import annotations


class RecordError(Exception):
    """Base class: something about call records went wrong."""


class InvalidRecord(RecordError, ValueError):
    """The record itself is malformed (a caller bug); the message names the field."""


class UnknownCall(RecordError, LookupError):
    """An incremental write for a call this store was never told about."""


class DatabaseConfigError(RecordError):
    """The database URL is malformed or names a driver trunkline does not support."""


class InvalidQuery(RecordError, ValueError):
    """A query helper got arguments it cannot use (bad limit, naive time, ...)."""


class RecordNotSaved(RecordError):
    """Neither the database nor the spool directory would take the record."""
