"""Where the store keeps things: the operator registry and the model cache."""

from __future__ import annotations

import os
from pathlib import Path


def trunkline_home() -> Path:
    """$TRUNKLINE_HOME, default ~/.trunkline: the operator's registry lives here."""
    return Path(os.environ.get("TRUNKLINE_HOME") or Path.home() / ".trunkline")


def registry_path() -> Path:
    return trunkline_home() / "models.yaml"


def cache_dir() -> Path:
    """Assembled models: $TRUNKLINE_CACHE_DIR/models, default ~/.cache/trunkline/models.

    A cache: everything here is rebuilt from the installed packages when missing.
    """
    base = os.environ.get("TRUNKLINE_CACHE_DIR") or Path.home() / ".cache" / "trunkline"
    return Path(base) / "models"
