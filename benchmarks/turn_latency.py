"""Turn latency over real SIP on loopback, against a `trunkline serve --no-ray` it starts.

    python benchmarks/turn_latency.py --turns 8 [--per-call 4] [--out FILE]

A scripted caller (espeak-ng speech through a G.711 mu-law line) asks N questions,
`--per-call` per call, each after the agent's previous reply ended. For every turn:
  - the server's trace (end of caller speech -> end of turn, STT, LLM first token,
    first sentence, TTS first audio, first audio handed to RTP), from its call record;
  - on the caller's side: end of caller voice sent -> first voiced agent audio out of
    the caller's jitter buffer.
Writes p50/p95 per stage to benchmarks/results/turn_latency-cpu.md. Bounded: each
reply waits at most --reply-timeout s, the whole run at most --max-minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.app.call_report import fetch_record, match_turns
from agent.app.dialer import AgentListener, DialOptions, dial, play
from agent.app.utterances import trailing_silence_s
from tests.e2e.conftest import CONVERSATION, caller_speech
from tests.e2e.stack import CPU_ENGINES, start_stack, stop_stack

RESULTS = Path(__file__).parent / "results" / "turn_latency-cpu.md"
# One sentence each: a pause between two sentences may (rightly) end the turn early,
# which measures Smart Turn's judgement rather than the reply pipeline.
QUESTIONS = [
    "How do I change the paper in my receipt printer?",
    "What does a blinking red light on the printer mean?",
    "Should I restart the printer if it still does not print?",
    "My barcode scanner does not beep anymore.",
    "What else can I try after checking the cable?",
    "The register says the network is offline.",
    "Can you check the store systems for me?",
    "Thank you for your help today.",
]
STAGES = (
    "turn_end",
    "stt_done",
    "llm_first_token",
    "first_sentence",
    "tts_first_audio",
    "first_audio_written",
    "first_packet_out",
)
SPANS = (  # (label, from, to): where the time goes
    ("end of speech -> end-of-turn decision (VAD silence + Smart Turn)", None, "turn_end"),
    ("STT (whisper tiny.en)", "turn_end", "stt_done"),
    ("LLM first token (Qwen2.5 0.5B, warm prefix)", "stt_done", "llm_first_token"),
    ("LLM -> first sentence", "llm_first_token", "first_sentence"),
    ("TTS first audio (Piper)", "first_sentence", "tts_first_audio"),
    ("audio -> RTP send queue", "tts_first_audio", "first_audio_written"),
    ("send queue -> first RTP packet on the wire", "first_audio_written", "first_packet_out"),
)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


async def one_call(stack: Any, questions: list[np.ndarray], args: argparse.Namespace) -> list[dict]:
    options = DialOptions(
        bind=("127.0.0.1", args.caller_sip), rtp_ports=(16700, 16799), ring_timeout_s=15
    )
    endpoint, call = await dial(stack.uri, options)
    listener = AgentListener(call)
    listener.start()
    client: list[dict[str, float | None]] = []
    starts: list[float] = []
    try:
        first = await listener.wait_voice(0.0, args.reply_timeout)
        if first is not None:
            await listener.wait_quiet(first, 1.2, args.reply_timeout)
        for pcm in questions:
            sent_at, drained = await play(call, pcm)
            starts.append(sent_at)
            voice_end = drained - trailing_silence_s(pcm)
            heard = await listener.wait_voice(drained, args.reply_timeout)
            client.append(
                {
                    "voice_end": voice_end,
                    "wire_ms": None if heard is None else (heard - voice_end) * 1000,
                }
            )
            if heard is not None:
                await listener.wait_quiet(heard, 1.2, args.reply_timeout)
        call_id = call.info.call_id
        await call.hangup()
    finally:
        await listener.stop()
        await endpoint.stop()
    record = await fetch_record(stack.base, call_id, wait_s=20)
    server_turns = match_turns(starts, (record or {}).get("turns", []))
    rows = []
    for measured, server in zip(client, server_turns, strict=True):
        stages = dict(server.get("stages_ms") or {})
        written = server.get("first_audio_written_monotonic")
        rows.append(
            {
                "caller_text": server.get("caller_text"),
                "agent_text": server.get("agent_text"),
                "stages": stages,
                "server_ms": server.get("turn_latency_ms"),
                "wire_ms": measured["wire_ms"],
                # same host, same CLOCK_MONOTONIC: caller voice end -> first agent
                # audio handed to RTP (the packet leaves within one 20 ms tick)
                "voice_to_rtp_ms": None
                if written is None
                else (written - measured["voice_end"]) * 1000,  # type: ignore[operator]
                "holding": server.get("holding_played"),
            }
        )
    return rows


def machine() -> list[str]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as info:
        for line in info:
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    load = os.getloadavg()
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores visible; no GPU",
        f"- RAM: {mem_kb / 1024 / 1024:.1f} GiB",
        f"- OS: {platform.platform()}, Python {platform.python_version()}",
        f"- Load average at the end: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
        "(shared machine: other engineers' jobs run too; numbers are noisy)",
    ]


def report(rows: list[dict], args: argparse.Namespace, wall_s: float) -> str:
    ok = [r for r in rows if r["stages"].get("first_audio_written") is not None]
    lines = [
        "# Turn latency: cpu profile, real SIP on loopback",
        "",
        f"`python benchmarks/turn_latency.py --turns {args.turns} --per-call {args.per_call}`, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {len(rows)} turns "
        f"({len(ok)} answered) in {wall_s:.0f} s. `trunkline serve --no-ray` with the "
        "embedded models: " + ", ".join(f"{k}={v['model']}" for k, v in CPU_ENGINES.items()) + "; "
        f"agent options {CONVERSATION}. Caller: our SipEndpoint dialling from another port, "
        "espeak-ng questions through 8 kHz mu-law, each after the previous reply ended.",
        "",
        "## Machine",
        "",
        *machine(),
        "",
        "## Turn latency (ms)",
        "",
        "| measure | p50 | p95 | n |",
        "| --- | --- | --- | --- |",
    ]
    totals = (
        ("end of caller voice sent -> first agent audio to RTP (same clock)", "voice_to_rtp_ms"),
        ("server: end of caller speech (VAD) -> first audio to RTP", "server_ms"),
        ("caller: end of voice sent -> first voiced agent audio received*", "wire_ms"),
    )
    for label, key in totals:
        values = [r[key] for r in ok if r[key] is not None]
        lines.append(f"| {label} | {pct(values, 50):.0f} | {pct(values, 95):.0f} | {len(values)} |")
    lines += [
        "",
        "\\* includes both jitter buffers (3 x 20 ms at the agent and at the caller) and",
        "the caller's playout tick: what a phone user would hear.",
        "",
        "## Stages (ms after the end of caller speech, cumulative)",
        "",
        "| stage | p50 | p95 |",
        "| --- | --- | --- |",
    ]
    for stage in STAGES:
        values = [r["stages"][stage] for r in ok if stage in r["stages"]]
        lines.append(f"| {stage} | {pct(values, 50):.0f} | {pct(values, 95):.0f} |")
    lines += ["", "## Where the time goes (ms per stage)", "", "| span | p50 | p95 |"]
    lines.append("| --- | --- | --- |")
    spans = {}
    for label, start, end in SPANS:
        values = [
            r["stages"][end] - (r["stages"][start] if start else 0.0)
            for r in ok
            if end in r["stages"] and (start is None or start in r["stages"])
        ]
        spans[label] = pct(values, 50)
        lines.append(f"| {label} | {pct(values, 50):.0f} | {pct(values, 95):.0f} |")
    ranked = sorted(spans.items(), key=lambda kv: -kv[1])
    lines += [
        "",
        "## What bounds it",
        "",
        "Largest p50 spans, in order: "
        + "; ".join(f"{label} {ms:.0f} ms" for label, ms in ranked[:3])
        + ". Everything runs on the same 2 shared cores (STT, LLM, TTS, the VAD/Smart"
        " Turn models and the caller's own espeak/RTP), so stages also slow each other.",
        "",
        "The reply pipeline is serial per turn: end of turn, then STT, then the LLM up to a"
        " whole first sentence, then TTS of that sentence. Ways down (see"
        " research/models-on-cpu.md): a speculative STT + LLM pass at the first pause"
        " (the detector's SpeechPaused event, not used by the session yet) would hide most"
        " of end-of-turn + STT; TTS on the first clause instead of the first sentence cuts"
        " the LLM -> first sentence span; the LLM's first token is already the warm-prefix"
        " number. The wire figure exceeds the server's by the agent's jitter buffer (60 ms)"
        " and the VAD's end-of-speech lag; the caller's figure adds its own jitter buffer.",
        "",
        "## Turns",
        "",
        "| # | caller (server STT) | agent (heard) | to RTP ms | holding line |",
        "| --- | --- | --- | --- | --- |",
    ]
    for number, r in enumerate(rows, 1):
        agent = (r["agent_text"] or "").replace("|", "/")[:90]
        caller = (r["caller_text"] or "").replace("|", "/")
        to_rtp = r["voice_to_rtp_ms"]
        shown = f"{to_rtp:.0f}" if to_rtp is not None else "-"
        lines.append(f"| {number} | {caller} | {agent} | {shown} | {r['holding']} |")
    return "\n".join(lines) + "\n"


async def main(args: argparse.Namespace) -> int:
    started = time.monotonic()
    count = max(1, min(args.turns, 64))
    speech = [caller_speech(QUESTIONS[i % len(QUESTIONS)]) for i in range(count)]
    speech = [np.concatenate([pcm, np.zeros(2400, np.int16)]) for pcm in speech]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="trunkline-bench-") as tmp:
        stack = await start_stack(
            Path(tmp), sip_port=args.sip_port, rtp=(16600, 16699), agent=CONVERSATION
        )
        try:
            deadline = started + args.max_minutes * 60
            for first in range(0, count, args.per_call):
                if time.monotonic() > deadline:
                    print("time limit reached; reporting what was measured", file=sys.stderr)
                    break
                batch = speech[first : first + args.per_call]
                rows += await asyncio.wait_for(
                    one_call(stack, batch, args), max(60.0, deadline - time.monotonic())
                )
                print(f"{len(rows)}/{count} turns", file=sys.stderr)
        finally:
            await stop_stack(stack)
    text = report(rows, args, time.monotonic() - started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0 if rows else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=8, help="turns in all (max 64)")
    parser.add_argument("--per-call", type=int, default=4, help="turns per call")
    parser.add_argument("--reply-timeout", type=float, default=60.0)
    parser.add_argument("--max-minutes", type=float, default=15.0)
    parser.add_argument("--sip-port", type=int, default=16062)
    parser.add_argument("--caller-sip", type=int, default=16072)
    parser.add_argument("--out", type=Path, default=RESULTS)
    sys.exit(asyncio.run(main(parser.parse_args())))
