"""Concurrency benchmark over the WebSocket media transport and SIP: helpers and the driver.

    python benchmarks/load_ws.py [--users 1,2,4] [--transports ws,sip] [--seconds 60] [--out FILE]

Starts `trunkline serve --no-ray --ws 127.0.0.1:PORT` (embedded CPU models, its own
TRUNKLINE_HOME; SIP on 127.0.0.1:17060), runs `locust -f benchmarks/locustfile.py
--headless` once per transport and user count (bounded in time), then writes calls
held, time to first audio p50/p95 and (WebSocket) audio underruns to
benchmarks/results/locust-cpu.md. Loopback only.

The pieces the Locust users need (the pre-rendered question, the analysis of the
agent's audio stream) live here too, free of gevent, so they are easy to test.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "locust-cpu.md"
NOTES_HEADING = "## What bounds it"
SAMPLE_RATE = 8000
FRAME_S = 0.020
UNDERRUN_GAP_S = 0.040  # silence inside agent speech longer than this is an underrun
VOICED_LEVEL = 1000  # |sample| above which the caller's question counts as voice
QUESTION = "How do I change the paper in my receipt printer?"
# Loopback ports for the server under load (outside the 15000-16999 test ranges)
SIP_PORT = 17060
RTP_PORTS = (17100, 17199)
WS_PORT = 17080
AGENT = {  # the e2e conversation settings: short replies, no silence prompts mid-test
    "max_tokens": 60,
    "holding_after_s": 8.0,
    "silence_prompt_s": 60.0,
    "silence_hangup_s": 30.0,
    "max_call_s": 300.0,
}


def render_question(text: str = QUESTION) -> tuple[bytes, float]:
    """`text` as a phone caller says it (espeak-ng, 8 kHz mu-law round trip), as
    16-bit PCM bytes, and the offset in seconds where its voice ends."""
    sys.path.insert(0, str(REPO))
    from tests.speech import phone_roundtrip, speak

    pcm, rate = speak(text, rate=SAMPLE_RATE)
    pcm, _ = phone_roundtrip(pcm, rate)
    pcm = np.asarray(pcm, dtype=np.int16)
    loud = np.flatnonzero(np.abs(pcm) > VOICED_LEVEL)
    if not loud.size:
        raise RuntimeError(f"espeak-ng produced no voiced audio for {text!r}")
    return pcm.astype("<i2").tobytes(), float(loud[-1] + 1) / SAMPLE_RATE


@dataclass
class AgentStream:
    """Arrival times of the agent's audio frames, as one caller received them."""

    arrivals: list[float] = field(default_factory=list)

    def add(self, at: float) -> None:
        self.arrivals.append(at)

    def first_after(self, t: float) -> float | None:
        return next((a for a in self.arrivals if a >= t), None)

    def quiet_since(self, now: float) -> float:
        """Seconds since the last agent frame arrived (inf before any)."""
        return now - self.arrivals[-1] if self.arrivals else float("inf")

    def underruns(self, start: float, end: float, pause_s: float) -> list[float]:
        """Gaps (seconds of missing audio) > UNDERRUN_GAP_S while the agent spoke in
        [start, end): between two frames less than `pause_s` apart (longer is the
        agent done talking, not starving)."""
        times = [a for a in self.arrivals if start <= a < end]
        gaps = []
        for before, after in itertools.pairwise(times):
            missing = after - before - FRAME_S
            if UNDERRUN_GAP_S < missing < pause_s:
                gaps.append(missing)
        return gaps


# ---------------------------------------------------------------- the driver


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _start_server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    sys.path.insert(0, str(REPO))
    from tests.e2e.stack import TRUNKLINE, free_port, write_config

    http_port = free_port()
    config = write_config(home, http_port, SIP_PORT, RTP_PORTS, AGENT)
    env = {**os.environ, "TRUNKLINE_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.pop("DATABASE_URL", None)
    log = (home / "serve.log").open("wb")
    command = [str(TRUNKLINE), "serve", "--no-ray", "--config", str(config)]
    command += ["--ws", f"127.0.0.1:{WS_PORT}"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{http_port}"


def _wait_ready(process: subprocess.Popen[bytes], base: str, home: Path, timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(base + "/healthz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    log = (home / "serve.log").read_text(errors="replace")
    raise RuntimeError(f"trunkline serve not ready in {timeout_s:g} s:\n{log[-3000:]}")


def _stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


USER_CLASSES = {"ws": "WebSocketCaller", "sip": "SipCaller"}


def run_locust(users: int, seconds: int, work: Path, transport: str = "ws") -> dict[str, object]:
    """One headless Locust run; returns its summary (written by the locustfile)."""
    name = f"{transport}-{users}"
    summary = work / f"summary-{name}.json"
    env = {
        **os.environ,
        "TRUNKLINE_LOAD_SUMMARY": str(summary),
        "TRUNKLINE_LOAD_SIP_URI": f"sip:agent@127.0.0.1:{SIP_PORT}",
    }
    command = [
        str(Path(sys.executable).with_name("locust")),
        "-f", str(REPO / "benchmarks" / "locustfile.py"), USER_CLASSES[transport],
        "--headless", "--users", str(users), "--spawn-rate", str(users),
        "--run-time", f"{seconds}s", "--stop-timeout", "60",
        "--host", f"ws://127.0.0.1:{WS_PORT}/",
        "--csv", str(work / f"locust-{name}"), "--only-summary",
    ]  # fmt: skip
    with (work / f"locust-{name}.log").open("wb") as log:
        subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                       timeout=seconds + 180, check=False)  # fmt: skip
    if not summary.exists():
        raise RuntimeError((work / f"locust-{name}.log").read_text(errors="replace")[-3000:])
    data = json.loads(summary.read_text())
    data["users"] = users
    data["transport"] = transport
    data["stats_csv"] = _stats_rows(work / f"locust-{name}_stats.csv")
    return data


def _stats_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def write_results(runs: list[dict[str, object]], seconds: int, out: Path) -> None:
    cpu = platform.processor() or platform.machine()
    lines = [
        "# Locust concurrency benchmark (CPU, embedded models)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with "
        "`python benchmarks/load_ws.py`: `trunkline serve --no-ray --ws` on loopback, "
        "Locust users as concurrent callers over the WebSocket media transport (ws) and "
        "over real SIP (sip: each call a `trunkline call` subprocess, our SipEndpoint "
        "dialer, G.711 RTP).",
        f"Machine: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        "faster-whisper tiny.en int8, llama.cpp Qwen2.5-Coder 0.5B Q-GGUF, Piper joe; "
        f"shared with other work (load average {os.getloadavg()[0]:.1f} when written), "
        "so numbers are indicative.",
        "",
        "Each call: connect, wait for the greeting to end, say one espeak-ng question "
        "(8 kHz, mu-law round trip, paced at real time), time to first agent audio after "
        "the end of the caller's voice, count underruns (ws only: gaps > 40 ms while the "
        f"agent speaks), hang up. Each run {seconds} s (calls in flight at the end may "
        "finish within Locust's stop timeout). SIP TTFA is `trunkline call`'s: end of the "
        "caller's voice sent -> first voiced agent frame out of its jitter buffer.",
        "",
        "| transport | users | calls held | calls failed | peak concurrent | TTFA p50 ms "
        "| TTFA p95 ms | underruns | of them in the greeting | underrun calls | longest gap ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        ttfa = [float(x) for x in run["ttfa_ms"]]  # type: ignore[union-attr]
        gaps = [float(x) for x in run["gaps_ms"]]  # type: ignore[union-attr]
        if run.get("transport", "ws") == "ws":
            underruns = (
                f"{len(gaps)} | {len(run['greeting_gaps_ms'])} | {run['underrun_calls']} "  # type: ignore[arg-type]
                f"| {_fmt(max(gaps) if gaps else None)}"
            )
        else:  # `trunkline call` reports no frame timings: not measured
            underruns = "- | - | - | -"
        lines.append(
            f"| {run.get('transport', 'ws')} | {run['users']} | {run['calls_held']} "
            f"| {run['calls_failed']} "
            f"| {run['peak_concurrent']} | {_fmt(_percentile(ttfa, 50))} "
            f"| {_fmt(_percentile(ttfa, 95))} | {underruns} |"
        )
    lines += ["", "Failures seen:", ""]
    failures = [
        f"- {r.get('transport', 'ws')}, {r['users']} users: {e}"
        for r in runs
        for e in r["errors"]  # type: ignore[union-attr]
    ]
    lines += failures or ["- none"]
    lines.append("")
    # The analysis below the table is written by hand: keep it across reruns.
    notes = out.read_text().partition(NOTES_HEADING)[2] if out.exists() else ""
    text = "\n".join(lines) + "\n" + (NOTES_HEADING + notes if notes else "")
    out.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="1,2,4", help="comma-separated user counts")
    parser.add_argument("--transports", default="ws,sip", help="comma-separated: ws, sip")
    parser.add_argument("--seconds", type=int, default=60, help="run time per user count (<= 60)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, CSVs)")
    args = parser.parse_args(argv)
    if not 1 <= args.seconds <= 60:
        parser.error("--seconds must be 1..60")
    counts = [int(x) for x in args.users.split(",")]
    transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    if not transports or any(t not in USER_CLASSES for t in transports):
        parser.error(f"--transports: a comma-separated list of {sorted(USER_CLASSES)}")
    if any(not 1 <= n <= 8 for n in counts):
        parser.error("--users: 1..8 each (this is a 2-core box)")
    work = Path(tempfile.mkdtemp(prefix="trunkline-locust-"))
    home = work / "home"
    home.mkdir()
    process, base = _start_server(home)
    runs = []
    try:
        _wait_ready(process, base, home, 240)
        for transport, users in itertools.product(transports, counts):
            print(f"locust: {users} {transport} users for {args.seconds} s", flush=True)
            run = run_locust(users, args.seconds, work, transport)
            print(json.dumps({k: v for k, v in run.items() if k != "stats_csv"}), flush=True)
            runs.append(run)
    finally:
        _stop_server(process)
        print(f"work folder: {work}", flush=True)
    write_results(runs, args.seconds, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
