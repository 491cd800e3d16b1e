"""The filters of `GET /api/calls`: parsed from query strings, with a clear error for bad ones.

The same filters apply to stored calls (as a database query) and to live calls of
other replicas (in memory, `matches`), so both listings agree on what a filter means.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agent.records.schema import DIRECTIONS

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
MAX_FILTER_LEN = 255


class BadFilter(ValueError):
    """A query parameter the API cannot use; the message says which and why."""


@dataclass(frozen=True)
class CallFilters:
    agent: str | None = None  # an agent's id or name
    direction: str | None = None
    outcome: str | None = None
    end_reason: str | None = None
    caller: str | None = None  # part of the caller URI, any case
    since: datetime | None = None  # started at or after
    until: datetime | None = None  # started before
    live: bool | None = None  # True: live calls only; False: ended calls only

    def store_kwargs(self) -> dict[str, Any]:
        """The filters as `CallRecordStore.list_calls` keywords (all but `live`)."""
        return {
            "agent": self.agent,
            "direction": self.direction,
            "outcome": self.outcome,
            "end_reason": self.end_reason,
            "caller": self.caller,
            "since": self.since,
            "until": self.until,
        }

    def matches(self, view: dict[str, Any]) -> bool:
        """Does a live call's view (see calls_api.call_view) pass these filters?"""
        if self.agent is not None and self.agent not in (view["agent_name"], view["agent_id"]):
            return False
        if self.direction is not None and view["direction"] != self.direction:
            return False
        if self.outcome is not None and view["outcome"] != self.outcome:
            return False
        if self.end_reason is not None and view["end_reason"] != self.end_reason:
            return False
        if self.caller is not None and self.caller.lower() not in (view["caller"] or "").lower():
            return False
        started = datetime.fromisoformat(view["started_at"])
        if self.since is not None and started < self.since:
            return False
        return self.until is None or started < self.until


def _text(name: str, value: str | None, max_len: int = MAX_FILTER_LEN) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value:
        raise BadFilter(f"{name} must not be empty")
    if len(value) > max_len:
        raise BadFilter(f"{name} is longer than {max_len} characters")
    if "\x00" in value:
        raise BadFilter(f"{name} must not contain NUL characters")
    return value


def _time(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise BadFilter(
            f"{name} must be an ISO 8601 time such as 2026-11-22T09:00:00Z, got {value!r}"
        ) from None
    # A time without an offset is taken as UTC, the API's clock.
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise BadFilter(f"{name} is out of range: {value!r}") from None


def _flag(name: str, value: str | None) -> bool | None:
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise BadFilter(f"{name} must be true or false, got {value!r}")


def parse_filters(
    *,
    agent: str | None = None,
    direction: str | None = None,
    outcome: str | None = None,
    end_reason: str | None = None,
    caller: str | None = None,
    since: str | None = None,
    until: str | None = None,
    live: str | None = None,
) -> CallFilters:
    """Raises BadFilter naming the parameter that is wrong."""
    direction = _text("direction", direction)
    if direction is not None and direction not in DIRECTIONS:
        raise BadFilter(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    filters = CallFilters(
        agent=_text("agent", agent),
        direction=direction,
        outcome=_text("outcome", outcome, 64),
        end_reason=_text("end_reason", end_reason, 64),
        caller=_text("caller", caller),
        since=_time("since", since),
        until=_time("until", until),
        live=_flag("live", live),
    )
    if filters.since and filters.until and filters.since >= filters.until:
        raise BadFilter("since must be earlier than until")
    return filters
