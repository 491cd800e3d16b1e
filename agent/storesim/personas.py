"""The store employees the simulated phone can play (data in personas.yaml beside this)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from agent.storesim.printer import LANE_ACTIONS

DEFAULT_PERSONA = "cooperative"


class PersonaError(ValueError):
    """An unknown persona name or a malformed persona file."""


@dataclass(frozen=True)
class Persona:
    name: str
    description: str
    voice: str
    words_per_minute: int
    opener: str
    first_prefix: str
    done_prefix: str
    hedge: str
    refusal: str
    refuses: frozenset[str]
    defer_first_action: bool = False
    defer_line: str = ""
    clarify_first_action: bool = False
    clarify_line: str = ""
    repeat_complaint: str = ""


_REQUIRED = ("description", "voice", "words_per_minute", "opener", "done_prefix")


def _persona(name: str, spec: Any) -> Persona:
    if not isinstance(spec, dict):
        raise PersonaError(f"persona {name!r} must be a mapping")
    missing = [key for key in _REQUIRED if key not in spec]
    if missing:
        raise PersonaError(f"persona {name!r} lacks {', '.join(missing)}")
    refuses = frozenset(spec.get("refuses") or ())
    unknown = sorted(refuses - set(LANE_ACTIONS) - {"restart_pc"})
    if unknown:
        raise PersonaError(f"persona {name!r} refuses unknown action(s) {', '.join(unknown)}")
    if refuses and not spec.get("refusal"):
        raise PersonaError(f"persona {name!r} refuses actions but has no `refusal` line")
    for flag, line in (
        ("defer_first_action", "defer_line"),
        ("clarify_first_action", "clarify_line"),
    ):
        if spec.get(flag) and not spec.get(line):
            raise PersonaError(f"persona {name!r} sets {flag} but has no `{line}`")
    return Persona(
        name=name,
        description=str(spec["description"]),
        voice=str(spec["voice"]),
        words_per_minute=int(spec["words_per_minute"]),
        opener=str(spec["opener"]),
        first_prefix=str(spec.get("first_prefix") or ""),
        done_prefix=str(spec["done_prefix"]),
        hedge=str(spec.get("hedge") or ""),
        refusal=" ".join(str(spec.get("refusal") or "").split()),
        refuses=refuses,
        defer_first_action=bool(spec.get("defer_first_action", False)),
        defer_line=str(spec.get("defer_line") or ""),
        clarify_first_action=bool(spec.get("clarify_first_action", False)),
        clarify_line=str(spec.get("clarify_line") or ""),
        repeat_complaint=str(spec.get("repeat_complaint") or ""),
    )


@cache
def load_personas() -> dict[str, Persona]:
    text = (resources.files("agent.storesim") / "personas.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not isinstance(data.get("personas"), dict):
        raise PersonaError("personas.yaml must have a `personas` mapping")
    return {name: _persona(name, spec) for name, spec in data["personas"].items()}


def persona_names() -> list[str]:
    return list(load_personas())


def get_persona(name: str) -> Persona:
    found = load_personas().get(name)
    if found is None:
        raise PersonaError(f"unknown persona {name!r}; choose one of {', '.join(persona_names())}")
    return found
