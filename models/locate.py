"""Finding installed packages' directories without importing them.

silero-vad imports torch and pipecat-ai imports half of its ecosystem: we only
need their data files, so we ask the import system where they are and stop there.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def package_dir(import_name: str) -> Path | None:
    """Directory of a top-level package, or None if it is not installed."""
    if "." in import_name:
        # find_spec of a submodule imports its parents; only top-level names are safe.
        raise ValueError(f"{import_name!r}: give the top-level package and a path inside it")
    try:
        spec = importlib.util.find_spec(import_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))
