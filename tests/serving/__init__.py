"""Serving tests: real engines on the embedded CPU models."""

from __future__ import annotations

from pathlib import Path

import models


def model_path(name: str) -> Path:
    """The verified local path of an embedded model, via the model store.

    A missing or corrupt model raises models.ModelError naming the model and the path,
    so the test fails with that message instead of skipping.
    """
    return models.resolve(name)
