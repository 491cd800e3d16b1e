"""Scale-out shape: an agent started with `--models-url` answers calls on the models of another
`trunkline serve` (as agent replicas do in front of a shared RayService)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import CONVERSATION, caller_speech, words, write_wav
from tests.e2e.stack import start_stack, stop_stack
from tests.e2e.test_call_cli import PRINTER_WORDS, caller_args, run_call

pytestmark = pytest.mark.timeout(400)


async def test_agent_on_a_remote_model_server_answers_a_call(stack, tmp_path: Path):
    agent = await start_stack(
        tmp_path / "agent", sip_port=16062, rtp=(16600, 16699), agent=CONVERSATION,
        extra_args=("--models-url", stack.base),
    )  # fmt: skip
    try:
        health = (await agent.get("/healthz")).json()
        assert health["sip"].endswith(":16062"), health
        speech = caller_speech("How do I change the paper in my receipt printer?")
        question = write_wav(tmp_path / "q.wav", speech, 0.5)
        code, out, err = await run_call(
            "--wav", str(question), "--to", agent.uri, "--api", agent.base, "--json",
            "--timeout", "60", *caller_args(port_offset=5),
        )  # fmt: skip
        assert code == 0, f"{err}\n{agent.log()[-3000:]}"
        report = json.loads(out)
        assert report["turns"], report
        heard = words(report["turns"][0]["agent_text"])
        assert heard, report
        # The caller's words went through the remote model server's STT.
        assert words(report["turns"][0]["caller_text"]) & PRINTER_WORDS, report
        # The record lives with the agent that took the call, not with the model server.
        assert any(c["call_id"] == report["call_id"] for c in await agent.calls())
    finally:
        assert await stop_stack(agent) == 0, agent.log()[-3000:]
