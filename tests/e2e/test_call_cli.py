"""`trunkline call` against a running `trunkline serve`: a spoken question over real SIP
gets a relevant spoken answer, timed and recorded; bad calls fail with a clear error."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.e2e.conftest import CALLER_RTP, CALLER_SIP, caller_speech, words, write_wav
from tests.e2e.stack import Stack

pytestmark = pytest.mark.timeout(300)

PRINTER_WORDS = {"paper", "printer", "receipt", "roll", "printers"}


async def run_call(
    *args: str, timeout_s: float = 240.0, command: str = "call", stack: Stack | None = None
) -> tuple[int, str, str]:
    """`trunkline call ...` as a subprocess (the module entry point: same command); with
    `stack`, as on that server's machine: its local CLI key reads the call records."""
    env = dict(os.environ)
    if stack is not None:
        env["TRUNKLINE_API_KEY"] = stack.api_key
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", f"agent.cli.{command}_cmd", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(f"trunkline call ran over {timeout_s} s:\n{err.decode()}") from None
    return proc.returncode or 0, out.decode(), err.decode()


def caller_args(port_offset: int = 0) -> list[str]:
    rtp = f"{CALLER_RTP[0]}-{CALLER_RTP[1]}"
    return ["--bind", f"127.0.0.1:{CALLER_SIP + port_offset}", "--rtp-ports", rtp]


async def test_a_spoken_question_gets_a_relevant_spoken_answer(stack, stt, tmp_path: Path):
    question = write_wav(
        tmp_path / "question.wav",
        caller_speech("How do I change the paper in my receipt printer?"),
        0.5,
    )
    out_wav = tmp_path / "reply.wav"
    code, out, err = await run_call(
        "--wav", str(question), "--record", str(out_wav), "--to", stack.uri,
        "--api", stack.base, "--json", "--timeout", "60", *caller_args(), stack=stack,
    )  # fmt: skip
    assert code == 0, f"{err}\n{stack.log()[-3000:]}"
    report = json.loads(out)
    print(json.dumps(report["turns"], indent=1))
    assert report["call_id"] and report["end_reason"] == "remote_hangup", report
    assert "store support" in (report["greeting"] or "").lower(), report
    (turn,) = report["turns"]
    # The server heard the question (its STT) and the caller heard an answer about it.
    assert words(turn["caller_text"]) & {"paper", "printer", "receipt"}, turn
    assert words(turn["agent_text"]) & PRINTER_WORDS, turn
    assert turn["turn_latency_ms"] is not None and turn["turn_latency_ms"] > 0, turn
    stages = turn["stages_ms"]
    for stage in ("turn_end", "stt_done", "llm_first_token", "first_audio_written"):
        assert stage in stages, stages
    assert stages["turn_end"] <= stages["stt_done"] <= stages["first_audio_written"], stages

    # What the agent sent, as recorded by the caller, is the greeting and the answer.
    pcm, rate = sf.read(out_wav, dtype="int16")
    assert rate == 8000 and pcm.size > 3 * rate
    heard_greeting = (await stt.transcribe(pcm[: 6 * rate], rate)).text.lower()
    assert "store support" in heard_greeting, heard_greeting
    reply = pcm[6 * rate : 26 * rate]
    assert np.abs(reply).max() > 1000, "no agent speech after the greeting"
    heard_reply = (await stt.transcribe(reply, rate)).text
    assert words(heard_reply) & PRINTER_WORDS, heard_reply


async def test_human_readable_report_and_the_record_lists_the_call(stack, tmp_path: Path):
    question = write_wav(tmp_path / "q.wav", caller_speech("Hello, my scanner is broken."), 0.5)
    code, out, err = await run_call(
        "--wav", str(question), "--to", stack.uri, "--api", stack.base, "--timeout", "60",
        *caller_args(1), stack=stack,
    )  # fmt: skip
    assert code == 0, err
    assert "latency" in out and "caller:" in out and "agent:" in out, out
    call_id = out.split()[1]
    record = await stack.record(call_id)
    assert record["end_reason"] == "remote_hangup" and record["outcome"] == "completed"
    speakers = {e["speaker"] for e in record["transcript"] if e["kind"] == "speech"}
    assert speakers == {"caller", "agent"}, record["transcript"]
    assert call_id in [c["call_id"] for c in await stack.calls()]
    metrics = (await stack.get("/metrics")).text
    assert "trunkline_turn_latency_seconds_count" in metrics


async def test_simulate_holds_a_two_turn_conversation(stack):
    code, out, err = await run_call(
        "--say", "My receipt printer is jammed.", "--say", "Thank you, the printer works now.",
        "--to", stack.uri, "--api", stack.base, "--json", "--timeout", "60", *caller_args(9),
        command="simulate", stack=stack,
    )  # fmt: skip
    assert code == 0, f"{err}\n{stack.log()[-3000:]}"
    report = json.loads(out)
    first, second = report["turns"]
    assert words(first["caller_text"]) & {"printer", "jammed", "receipt"}, first
    assert words(second["caller_text"]) & {"thank", "printer", "works"}, second
    assert first["agent_text"] and second["agent_text"], report["turns"]
    assert first["turn_latency_ms"] and second["turn_latency_ms"]


async def test_unreadable_wav_is_a_clear_error(stack, tmp_path: Path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    code, _, err = await run_call("--wav", str(bad), "--to", stack.uri, *caller_args(2))
    assert code == 1 and "cannot read" in err and "bad.wav" in err, err


async def test_nothing_listening_is_connection_refused(tmp_path: Path):
    question = write_wav(tmp_path / "q.wav", caller_speech("Hello."), 0.3)
    code, _, err = await run_call(
        "--wav", str(question), "--to", "sip:agent@127.0.0.1:16099", *caller_args(3)
    )
    assert code == 1 and "connection refused" in err and "16099" in err, err


async def test_a_peer_that_never_answers_is_no_answer(tmp_path: Path):
    question = write_wav(tmp_path / "q.wav", caller_speech("Hello."), 0.3)
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # takes SIP, says nothing
    silent.bind(("127.0.0.1", 16098))
    try:
        code, _, err = await run_call(
            "--wav", str(question), "--to", "sip:agent@127.0.0.1:16098", "--timeout", "2",
            *caller_args(4),
        )  # fmt: skip
    finally:
        silent.close()
    assert code == 1 and "no answer" in err, err
