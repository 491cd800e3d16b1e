"""A third-party SIP client (baresip) calls `trunkline serve`: it hears the greeting, asks
a question (espeak-ng speech from a file), hangs up at the end of its file; the call's
record is persisted with both sides' text."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import caller_speech, words, write_wav
from tests.telephony.peers import baresip_config, baresip_heard, require, run_baresip

pytestmark = pytest.mark.timeout(300)

BARESIP_PORT = 16080
BARESIP_RTP = (16300, 16319)


async def test_baresip_calls_in_and_the_record_has_both_sides(stack, stt, tmp_path):
    require("baresip")
    source = write_wav(
        tmp_path / "caller.wav",
        4.5,  # the greeting (about 3.6 s) plays first
        caller_speech("My receipt printer is out of paper. What should I do?"),
        12.0,  # the reply; baresip hangs up when its file ends
    )
    # baresip's aufile wants plain 16-bit PCM at the source rate: that is what we wrote
    folder = baresip_config(tmp_path / "bs", sip_port=BARESIP_PORT, rtp_range=BARESIP_RTP,
                            source_wav=source)  # fmt: skip
    before = {c["call_id"] for c in await stack.calls()}
    out = await run_baresip(folder, command=f"/dial {stack.uri}", quit_after_s=30)
    assert "Call established" in out, out[-2000:]

    new = [c for c in await stack.calls() if c["call_id"] not in before]
    assert len(new) == 1, (new, out[-2000:])
    record = await stack.record(new[0]["call_id"])
    assert "baresip" in record["caller"]
    assert record["end_reason"] == "remote_hangup", record
    said = {
        speaker: " ".join(e["text"] for e in record["transcript"] if e["speaker"] == speaker)
        for speaker in ("caller", "agent")
    }
    assert words(said["caller"]) & {"printer", "paper", "receipt"}, record["transcript"]
    assert "store support" in said["agent"].lower(), record["transcript"]
    replies = [e for e in record["transcript"] if e["speaker"] == "agent" and e["kind"] == "speech"]
    assert replies and replies[0]["text"], record["transcript"]
    # One turn as a rule; on a loaded machine the pause between the caller's two sentences
    # can complete the first turn (Smart Turn sees a finished statement), and the question is
    # then a turn of its own: both are right, and each answered turn carries its trace.
    turns = record["turns"]
    assert 1 <= len(turns) <= 2, turns
    answered = [t for t in turns if t["turn_latency_ms"]]
    assert answered, turns
    assert all(t["stages_ms"]["first_audio_written"] > 0 for t in answered), answered

    # baresip really heard the agent: its decoded-audio dump transcribes to the greeting
    heard = baresip_heard(folder)
    text = (await stt.transcribe(heard[: 8000 * 6], 8000)).text.lower()
    assert "store support" in text, text
