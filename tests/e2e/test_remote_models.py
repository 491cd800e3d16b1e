"""Scale-out shape: an agent started with `--models-url` answers calls on the models of another
`trunkline serve` (as agent replicas do in front of a shared RayService), and keeps the
call (an apology, then a saved record) when that model server is killed mid-call."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest

from agent.app.dialer import AgentListener, DialOptions, dial, play
from tests.e2e.conftest import CALLER_RTP, CONVERSATION, caller_speech, words, write_wav
from tests.e2e.stack import Stack, start_stack, stop_stack
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
            "--timeout", "60", *caller_args(port_offset=5), stack=agent,
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


def kill(stack: Stack) -> None:
    assert stack.process is not None
    stack.process.send_signal(signal.SIGKILL)  # no goodbye from the model server
    stack.process.wait(10)


@pytest.mark.parametrize("when", ["between turns", "mid-reply"])
async def test_model_server_killed_mid_call_gives_the_apology_and_a_saved_record(
    stt, tmp_path: Path, when: str
):
    # A model server of its own (the test kills it), and an agent on its models.
    models = await start_stack(
        tmp_path / "models", sip_port=16063, rtp=(16400, 16449), agent=CONVERSATION
    )
    agent = None
    try:
        agent = await start_stack(
            tmp_path / "agent", sip_port=16064, rtp=(16450, 16499), agent=CONVERSATION,
            extra_args=("--models-url", models.base),
        )  # fmt: skip
        options = DialOptions(bind=("127.0.0.1", 16079), rtp_ports=CALLER_RTP, ring_timeout_s=15)
        endpoint, call = await dial(agent.uri, options)
        listener = AgentListener(call)
        listener.start()
        try:
            first = await listener.wait_voice(0.0, 60)
            assert first is not None, f"no greeting\n{agent.log()[-3000:]}"
            await listener.wait_quiet(first, 1.2, 60)
            if when == "between turns":
                await asyncio.to_thread(kill, models)
            question = caller_speech("How do I change the paper in my receipt printer?")
            asked_at, _ = await play(call, question)
            if when == "mid-reply":
                # The reply's first words are out: the LLM is still writing the rest.
                reply_at = await listener.wait_voice(asked_at + 0.5, 60)
                assert reply_at is not None, f"no reply\n{agent.log()[-3000:]}"
                await asyncio.to_thread(kill, models)
            killed_at = time.monotonic()
            # The apology is pre-synthesized: it plays with no model at all.
            await asyncio.sleep(4.0)
            await listener.wait_quiet(killed_at, 1.5, 30)
            heard = (await stt.transcribe(listener.audio(killed_at), 8000)).text
            call_id = call.info.call_id
        finally:
            await call.hangup()
            await listener.stop()
            await endpoint.stop()
        print(f"\nheard after the crash ({when}): {heard!r}")
        assert words(heard) & {"sorry", "moment", "trouble"}, heard
        record = await agent.record(call_id, timeout_s=30)
        stages = {e["stage"] for e in record["errors"]}
        assert stages & {"stt", "llm", "tts"}, record["errors"]
        apologies = [e for e in record["transcript"] if e["kind"] == "apology"]
        assert apologies, record["transcript"]
        if when == "mid-reply":  # what was said before the crash is in the record
            replies = [e for e in record["transcript"] if e["kind"] == "speech"]
            assert any(e["speaker"] == "agent" for e in replies), record["transcript"]
        # The agent itself stayed up: it still answers health checks after the call.
        assert (await agent.get("/healthz")).status_code in (200, 503)
    finally:
        if agent is not None:
            assert await stop_stack(agent) == 0, agent.log()[-3000:]
        await stop_stack(models)
