"""The store PC's allow-list: command names are an enum, lanes validated ints, and the
command string is built here, never taken from LLM (or caller) text."""

from __future__ import annotations

import enum

from agent.tools.errors import ToolRefused

LANE_MIN, LANE_MAX = 1, 99


class StoreCommand(enum.Enum):
    PRINTER_STATUS = "printer_status"
    TEST_PRINT = "coup"
    INK_CLEAN = "ink_clean"
    PRINTER_RESET = "printer_reset"
    LANES = "lanes"

    @property
    def takes_lane(self) -> bool:
        return self is not StoreCommand.LANES


def validate_lane(lane: object) -> int:
    # bool is an int subclass; `True` must not become lane 1.
    if not isinstance(lane, int) or isinstance(lane, bool) or not LANE_MIN <= lane <= LANE_MAX:
        raise ToolRefused(f"lane must be an integer {LANE_MIN}-{LANE_MAX}, got {lane!r}")
    return lane


def build_command(command: StoreCommand, lane: int | None = None) -> str:
    if not isinstance(command, StoreCommand):
        raise ToolRefused(f"not an allow-listed store command: {command!r}")
    if command.takes_lane:
        return f"cd /catalina && {command.value} {validate_lane(lane)}"
    if lane is not None:
        raise ToolRefused(f"{command.value} takes no lane")
    return f"cd /catalina && {command.value}"
