"""Example agents shipped with trunkline, as `trunkline agents apply` takes them.

    trunkline agents examples                    # names and paths
    trunkline agents apply --example maya        # or -f "$(trunkline agents examples --path maya)"

Maya is seed 000's help-desk agent; the appointment scheduler and the sales qualifier are
seed 004's two configuration examples.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


class UnknownExample(LookupError):
    """No example agent by that name; the message lists the known ones."""


def examples_dir() -> Path:
    return Path(str(resources.files(__name__)))


def example_names() -> list[str]:
    """'maya', 'appointment-scheduler', ...: file stems with '-' for '_'."""
    return sorted(p.stem.replace("_", "-") for p in examples_dir().glob("*.yaml"))


def example_path(name: str) -> Path:
    path = examples_dir() / f"{name.strip().lower().replace('-', '_')}.yaml"
    if not path.is_file():
        raise UnknownExample(f"no example agent {name!r} (known: {', '.join(example_names())})")
    return path
