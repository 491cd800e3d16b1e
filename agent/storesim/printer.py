"""One lane's receipt/coupon printer as a small state machine.

The status a store PC reports is derived from the physical state (paper, cover, power,
cable, faults) plus timed phases (Busy while the head cleans, Off Line while it resets),
so a caller's claim only changes the report when the physical action really fixes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Paper = Literal["OK", "Low", "Out", "Jam"]
Cover = Literal["Open", "Closed"]
Ink = Literal["OK", "Low", "Empty"]
StatusWord = Literal["Idle", "Busy", "Off Line", "Error"]

# What the caller can physically do at the lane (POST /sim/.../actions).
LANE_ACTIONS = (
    "load_paper",
    "clear_jam",
    "open_cover",
    "close_cover",
    "power_off",
    "power_on",
    "power_cycle",
    "reseat_cable",
    "unplug_cable",
    "replace_ink",
)

Clock = Callable[[], float]


class ActionRefused(Exception):
    """A physical action that cannot happen (e.g. no paper roll in stock)."""


@dataclass
class Timing:
    ink_clean_s: float = 3.0
    reset_s: float = 3.0
    power_on_s: float = 2.0
    pc_restart_s: float = 5.0


@dataclass
class Printer:
    lane: int
    paper: Paper = "OK"
    cover: Cover = "Closed"
    ink: Ink = "OK"
    powered: bool = True
    cable_connected: bool = True
    # A communication glitch that only a printer reset (or power cycle) clears.
    link_glitch: bool = False
    # Hardware fault code such as "E31 CUTTER FAULT"; cleared by a reset only when
    # `error_clears_on_reset`, otherwise it needs a technician.
    error: str | None = None
    error_clears_on_reset: bool = True
    # Head cleanings still needed before test prints come out clear.
    dirty_head_cleanings: int = 0
    busy_until: float = 0.0
    offline_until: float = 0.0
    prints: list[dict] = field(default_factory=list)

    # ------------------------------------------------------------ derived state

    def fault(self) -> tuple[StatusWord, str] | None:
        """The persistent problem, if any: (status word, last error text)."""
        if not self.powered or not self.cable_connected or self.link_glitch:
            return "Off Line", "E02 NO COMMUNICATION"
        if self.error:
            return "Error", self.error
        if self.paper == "Jam":
            return "Error", "E08 PAPER JAM"
        if self.cover == "Open":
            return "Off Line", "E05 COVER OPEN"
        if self.paper == "Out":
            return "Off Line", "E07 PAPER OUT"
        if self.ink == "Empty":
            return "Error", "E12 INK EMPTY"
        return None

    def status(self, now: float) -> StatusWord:
        if now < self.offline_until:
            return "Off Line"
        if now < self.busy_until:
            return "Busy"
        fault = self.fault()
        return fault[0] if fault else "Idle"

    def status_line(self, now: float) -> str:
        fault = self.fault()
        last_error = fault[1] if fault else "None"
        return (
            f"Lane {self.lane} Printer: {self.status(now)} Paper: {self.paper} "
            f"Cover: {self.cover} Ink: {self.ink} Last error: {last_error}"
        )

    def print_quality(self) -> str:
        if self.dirty_head_cleanings > 0 or self.ink == "Low":
            return "faded"
        return "clear"

    # ------------------------------------------------------------ store PC commands

    def test_print(self, now: float) -> str:
        status = self.status(now)
        if status != "Idle":
            return f"ERROR lane {self.lane} not ready: {status}"
        self.prints.append({"at": now, "quality": self.print_quality()})
        return f"Test coupon sent to lane {self.lane}"

    def ink_clean(self, now: float, timing: Timing) -> str:
        status = self.status(now)
        if status != "Idle":
            return f"ERROR lane {self.lane} not ready: {status}"
        self.busy_until = now + timing.ink_clean_s
        self.dirty_head_cleanings = max(0, self.dirty_head_cleanings - 1)
        return f"Print head cleaning started on lane {self.lane}"

    def reset(self, now: float, timing: Timing) -> str:
        # A reset re-establishes the link and clears soft faults; paper, cover and
        # hard faults are physical and come back once the reset is over.
        self.busy_until = 0.0
        self.offline_until = now + timing.reset_s
        self.link_glitch = False
        if self.error and self.error_clears_on_reset:
            self.error = None
        return f"Lane {self.lane} printer reset"

    # ------------------------------------------------------------ caller's actions

    def act(self, action: str, now: float, timing: Timing, paper_rolls: int) -> int:
        """Apply a physical action; returns how many paper rolls it used."""
        if action == "load_paper":
            if self.paper == "Jam":
                raise ActionRefused("paper is jammed: clear the jam first")
            if paper_rolls <= 0:
                raise ActionRefused("the store has no paper rolls in stock")
            self.paper = "OK"
            return 1
        if action == "clear_jam":
            if self.paper == "Jam":
                self.paper = "OK"
        elif action == "open_cover":
            self.cover = "Open"
        elif action == "close_cover":
            self.cover = "Closed"
        elif action == "power_off":
            self.powered = False
        elif action == "power_on":
            self._power_on(now, timing)
        elif action == "power_cycle":
            self.powered = False
            self._power_on(now, timing)
        elif action == "reseat_cable":
            self.cable_connected = True
        elif action == "unplug_cable":
            self.cable_connected = False
        elif action == "replace_ink":
            self.ink = "OK"
        else:
            raise ActionRefused(f"unknown action {action!r}")
        return 0

    def _power_on(self, now: float, timing: Timing) -> None:
        if not self.powered:
            self.powered = True
            self.link_glitch = False
            self.busy_until = 0.0
            self.offline_until = now + timing.power_on_s
            if self.error and self.error_clears_on_reset:
                self.error = None

    def snapshot(self, now: float) -> dict:
        fault = self.fault()
        return {
            "lane": self.lane,
            "status": self.status(now),
            "paper": self.paper,
            "cover": self.cover,
            "ink": self.ink,
            "powered": self.powered,
            "cable_connected": self.cable_connected,
            "last_error": fault[1] if fault else None,
            "print_quality": self.print_quality(),
            "prints": list(self.prints),
            "status_line": self.status_line(now),
        }
