"""Adaptive personality (seed 000, section 5): how Maya's phrasing follows the POC.

Three scores, 0-100, start at 50 and move with every caller reply:
- cooperation: "sure, done" raises it; "I'm busy, not now", "I already did that" lower it;
- technical level: confusion ("what? where is that?") lowers it, technical words raise it;
- urgency: "make it quick, I've got a line" raises it.
The style they give changes pacing, detail and empathy of what Maya says, never what
she asks for: the workflow's text stays the substance of every line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Pace = Literal["efficient", "balanced", "patient"]
Level = Literal["low", "moderate", "high"]

# Signal phrases, matched on whole words of the lower-cased reply.
POSITIVE = ("okay", "ok", "sure", "yes", "yeah", "yep", "got it", "done", "ready", "no problem")
HESITANT = ("busy", "later", "not now", "in a rush", "can't", "cannot", "slammed", "hurry")
CONFUSED = ("what", "how", "don't understand", "where", "which", "confused", "not sure")
FRUSTRATED = ("already did", "already tried", "not working", "still broken", "again", "ridiculous")
TECHNICAL = ("firmware", "driver", "print head", "thermal", "cable", "reset", "error code", "usb")
URGENT = ("quick", "quickly", "hurry", "line", "customers", "busy", "rush", "fast", "slammed")
MACHINE = ("robot", "machine", "real person", "human", "recording")

STEP = 12  # how far one signal moves a score


def _has(text: str, phrase: str) -> bool:
    return re.search(rf"\b{re.escape(phrase)}\b", text) is not None


def _clamp(value: int) -> int:
    return max(0, min(100, value))


@dataclass(frozen=True)
class Style:
    pace: Pace
    detail: Level
    empathy: Level


@dataclass
class AdaptivePersonality:
    cooperation: int = 50
    technical: int = 50
    urgency: int = 50
    replies: int = 0
    signals: list[str] = field(default_factory=list)  # the last few, for the record

    def observe(self, reply: str) -> None:
        """Update the scores from one caller reply."""
        text = " ".join(reply.lower().replace("’", "'").split())
        if not text:
            return
        self.replies += 1
        found: list[str] = []
        if any(_has(text, p) for p in POSITIVE):
            self.cooperation += STEP * 2 // 3
            found.append("positive")
        if any(_has(text, p) for p in HESITANT):
            self.cooperation -= STEP
            found.append("hesitant")
        if any(_has(text, p) for p in FRUSTRATED):
            self.cooperation -= STEP
            found.append("frustrated")
        if any(_has(text, p) for p in MACHINE):
            self.cooperation -= STEP
            found.append("machine")
        if any(_has(text, p) for p in CONFUSED):
            self.technical -= STEP
            found.append("confused")
        if any(_has(text, p) for p in TECHNICAL):
            self.technical += STEP
            found.append("technical")
        if any(_has(text, p) for p in URGENT):
            self.urgency += STEP
            found.append("urgent")
        self.cooperation, self.technical = _clamp(self.cooperation), _clamp(self.technical)
        self.urgency = _clamp(self.urgency)
        self.signals = (self.signals + found)[-10:]

    def style(self) -> Style:
        """Seed 000's thresholds: > 70 cooperative and efficient, < 40 patient and warm."""
        if self.cooperation > 70:
            pace, detail, empathy = "efficient", "moderate", "low"
        elif self.cooperation < 40:
            pace, detail, empathy = "patient", "high", "high"
        else:
            pace, detail, empathy = "balanced", "moderate", "moderate"
        if self.technical < 40:
            detail = "high"
        elif self.technical > 70 and detail != "high":
            detail = "low"
        if self.urgency > 70:
            pace = "efficient"
        return Style(pace, detail, empathy)  # type: ignore[arg-type]

    def scores(self) -> dict[str, object]:
        style = self.style()
        return {
            "cooperation": self.cooperation,
            "technical_level": self.technical,
            "urgency": self.urgency,
            "style": {"pace": style.pace, "detail": style.detail, "empathy": style.empathy},
            "signals": list(self.signals),
        }

    def describe(self) -> str:
        """The style in words, for the LLM phraser's instructions."""
        style = self.style()
        parts = {
            "efficient": "brisk and to the point",
            "balanced": "friendly and clear",
            "patient": "patient and reassuring",
        }[style.pace]
        detail = {
            "low": "use technical terms freely",
            "moderate": "plain words",
            "high": "very simple words, one small step at a time",
        }[style.detail]
        empathy = {
            "low": "no extra sympathy",
            "moderate": "a brief friendly touch",
            "high": "acknowledge that they are busy or frustrated",
        }[style.empathy]
        return f"{parts}; {detail}; {empathy}"
