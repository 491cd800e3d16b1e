"""The Ray LLM client warms the deployment's prompt prefix, so a call answered in Ray
mode starts from the system prompt's state like the in-process engine does."""

from __future__ import annotations

import pytest

from serving.base import BadInput
from serving.client import ray_client
from tests.serving.test_ray_app import base_url  # noqa: F401 (the Ray app fixture)

pytestmark = pytest.mark.slow

SYSTEM = {
    "role": "system",
    "content": (
        "You are Maya, a store support specialist. You help store staff with receipt "
        "printers, barcode scanners, registers and network problems over the phone. "
        "Answer in one or two short sentences."
    ),
}


async def test_ray_llm_warm_prefills_the_stable_prefix(base_url: str) -> None:  # noqa: F811
    client = await ray_client()
    cached = await client.llm.warm([SYSTEM])
    assert cached >= 20, cached
    deltas = [
        d
        async for d in client.llm.chat(
            [SYSTEM, {"role": "user", "content": "Say OK."}], max_tokens=8
        )
    ]
    usage = deltas[-1].usage
    assert usage is not None and usage.cached_tokens >= 20, usage
    with pytest.raises(BadInput):
        await client.llm.warm([{"role": "nobody", "content": "hi"}])
