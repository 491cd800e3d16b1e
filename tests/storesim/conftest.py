from __future__ import annotations

import pytest

from tests.storesim.simulator import make_sim


@pytest.fixture
async def sim(request, tmp_path):
    """A running simulator; parametrize indirectly with a scenario name (default demo)."""
    scenario = getattr(request, "param", "demo")
    async with make_sim(tmp_path / "storesim", scenario) as running:
        yield running
