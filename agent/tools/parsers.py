"""Parsers for the store PC's output -> typed results. Anything unexpected raises
StoreOutputError with the offending text, so a changed PC never passes silently."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from agent.tools.errors import StoreOutputError

StatusWord = Literal["Idle", "Busy", "Off Line", "Error"]

_STATUS = re.compile(
    r"Lane (?P<lane>\d{1,2}) Printer: (?P<status>Idle|Busy|Off Line|Error) "
    r"Paper: (?P<paper>OK|Low|Out|Jam) Cover: (?P<cover>Open|Closed) "
    r"Ink: (?P<ink>OK|Low|Empty) Last error: (?P<last_error>.+)"
)
_COUP_OK = re.compile(r"Test coupon sent to lane (?P<lane>\d{1,2})")
_NOT_READY = re.compile(
    r"ERROR lane (?P<lane>\d{1,2}) not ready: (?P<status>Idle|Busy|Off Line|Error)"
)
_CLEAN_OK = re.compile(r"Print head cleaning started on lane (?P<lane>\d{1,2})")
_RESET_OK = re.compile(r"Lane (?P<lane>\d{1,2}) printer reset")
_LANE_LINE = re.compile(r"(?P<lane>\d{1,2}) (?P<status>Idle|Busy|Off Line|Error)")


@dataclass(frozen=True)
class PrinterStatus:
    lane: int
    status: StatusWord
    paper: str
    cover: str
    ink: str
    last_error: str | None  # None when the printer reports "None"

    @property
    def ready(self) -> bool:
        return self.status == "Idle"


@dataclass(frozen=True)
class CommandOutcome:
    """Result of an action command (test print, head cleaning, reset)."""

    lane: int
    started: bool
    not_ready_status: StatusWord | None = None  # why it did not start


@dataclass(frozen=True)
class LaneSummary:
    lane: int
    status: StatusWord


def _one_line(output: str, what: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    if len(lines) != 1:
        raise StoreOutputError(f"{what}: expected one line, got {output!r}")
    return lines[0].strip()


def _check_lane(found: int, expected: int, what: str, output: str) -> None:
    if found != expected:
        raise StoreOutputError(f"{what}: asked about lane {expected}, got {output!r}")


def parse_printer_status(output: str, lane: int) -> PrinterStatus:
    line = _one_line(output, "printer_status")
    match = _STATUS.fullmatch(line)
    if match is None:
        raise StoreOutputError(f"printer_status: unexpected output {line!r}")
    _check_lane(int(match["lane"]), lane, "printer_status", line)
    last_error = match["last_error"].strip()
    return PrinterStatus(
        lane=lane,
        status=match["status"],  # type: ignore[arg-type]
        paper=match["paper"],
        cover=match["cover"],
        ink=match["ink"],
        last_error=None if last_error == "None" else last_error,
    )


def _parse_action(output: str, lane: int, ok: re.Pattern[str], what: str) -> CommandOutcome:
    line = _one_line(output, what)
    if match := ok.fullmatch(line):
        _check_lane(int(match["lane"]), lane, what, line)
        return CommandOutcome(lane=lane, started=True)
    if match := _NOT_READY.fullmatch(line):
        _check_lane(int(match["lane"]), lane, what, line)
        return CommandOutcome(lane=lane, started=False, not_ready_status=match["status"])  # type: ignore[arg-type]
    raise StoreOutputError(f"{what}: unexpected output {line!r}")


def parse_test_print(output: str, lane: int) -> CommandOutcome:
    return _parse_action(output, lane, _COUP_OK, "coup")


def parse_ink_clean(output: str, lane: int) -> CommandOutcome:
    return _parse_action(output, lane, _CLEAN_OK, "ink_clean")


def parse_printer_reset(output: str, lane: int) -> CommandOutcome:
    return _parse_action(output, lane, _RESET_OK, "printer_reset")


def parse_lanes(output: str) -> list[LaneSummary]:
    lanes = []
    for line in output.strip().splitlines():
        match = _LANE_LINE.fullmatch(line.strip())
        if match is None:
            raise StoreOutputError(f"lanes: unexpected line {line!r}")
        lanes.append(LaneSummary(lane=int(match["lane"]), status=match["status"]))  # type: ignore[arg-type]
    if not lanes:
        raise StoreOutputError("lanes: the store PC listed no lanes")
    return lanes
