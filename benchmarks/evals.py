"""Workflow x persona evals: Maya calls a simulated store about a ticket, end to end.

    python benchmarks/evals.py [--workflows KBA3813,paper_jam] [--personas cooperative,busy]
                               [--max-calls 6] [--call-timeout 420] [--max-minutes 25]
                               [--server URL --api-key KEY] [--out benchmarks/results/evals-cpu.md]

For each case the workflow's scenario is loaded into a store simulator in this process,
the store's phone answers as the persona (Whisper ears, espeak-ng voice, physical actions
on the simulator), and the agent dials the ticket (POST /api/calls). Without --server a
`trunkline serve --no-ray` with the embedded CPU models is started for the run, its store
systems pointed at this simulator. Reported: resolution rate, expected-outcome rate,
correct-step rate (expected paths in agent/storesim/eval_cases.yaml), turns, duration.
Bounded: --max-calls calls, each at most --call-timeout s, the run at most --max-minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import models
from agent.storesim.evalrun import AgentApi, SimPlace, load_cases, run_case, summarise
from agent.storesim.personas import persona_names
from serving.stt.faster_whisper_engine import FasterWhisperSTT
from tests.e2e.stack import CPU_ENGINES, TRUNKLINE, Stack, stop_stack

RESULTS = Path(__file__).resolve().parent / "results"
# Our own loopback ports (helper B's range), so a run never meets a dev stack on 8000/5060.
SIM_HTTP, SIM_SSH, PHONE_SIP = 18950, 18951, 18952
AGENT_HTTP, AGENT_SIP = 18961, 18960
AGENT_RTP, PHONE_RTP = (18900, 18939), (18970, 18989)
TARGETS = {"resolvable_resolution_rate": 0.85, "correct_step_rate": 0.99}


def _agent_config(home: Path, state_dir: Path) -> Path:
    config = {
        "profile": "cpu",
        "http": {"host": "127.0.0.1", "port": AGENT_HTTP},
        "timeouts": {"first_output_s": 30, "total_s": 120},
        "engines": CPU_ENGINES,
        "sip": {
            "bind": f"127.0.0.1:{AGENT_SIP}",
            "rtp_ports": f"{AGENT_RTP[0]}-{AGENT_RTP[1]}",
            "media_timeout_s": 30,
        },
        "stores": {
            "api_url": f"http://127.0.0.1:{SIM_HTTP}",
            "known_hosts": str(state_dir / "known_hosts"),
        },
    }
    path = home / "stack.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _admin_key(home: Path) -> str:
    env = {**os.environ, "TRUNKLINE_HOME": str(home)}
    env.pop("DATABASE_URL", None)
    out = subprocess.run(
        [str(TRUNKLINE), "apikey", "create", "--scope", "admin", "--name", "evals"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def _launch_agent(home: Path, state_dir: Path) -> Stack:
    home.mkdir(parents=True, exist_ok=True)
    config = _agent_config(home, state_dir)
    stack = Stack(home, AGENT_HTTP, AGENT_SIP)
    env = {**os.environ, "TRUNKLINE_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.pop("DATABASE_URL", None)
    with stack.log_path.open("wb") as log:
        stack.process = subprocess.Popen(
            [str(TRUNKLINE), "serve", "--no-ray", "--config", str(config)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return stack


async def _start_agent(home: Path, state_dir: Path, ready_timeout_s: float = 300) -> Stack:
    import httpx

    stack = await asyncio.to_thread(_launch_agent, home, state_dir)
    assert stack.process is not None
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:  # bounded wait for the models and SIP
        if stack.process.poll() is not None:
            raise RuntimeError(f"trunkline serve exited:\n{stack.log()[-3000:]}")
        try:
            if (await stack.get("/healthz")).status_code == 200:
                return stack
        except httpx.HTTPError:
            pass
        await asyncio.sleep(1.0)
    await stop_stack(stack)
    raise RuntimeError(f"trunkline serve not ready in {ready_timeout_s:g} s")


def _pairs(workflows: list[str], personas: list[str], max_calls: int) -> list[tuple[str, str]]:
    # Workflow-major would spend the whole budget on the first workflows; interleave so a
    # small --max-calls still covers many workflows and personas.
    pairs = []
    for offset in range(len(personas)):
        for index, workflow in enumerate(workflows):
            pairs.append((workflow, personas[(index + offset) % len(personas)]))
    return pairs[:max_calls]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workflows = args.workflows.split(",") if args.workflows else list(load_cases())
    personas = args.personas.split(",") if args.personas else persona_names()
    pairs = _pairs(workflows, personas, args.max_calls)
    if args.cases:
        pairs = [tuple(c.split(":", 1)) for c in args.cases.split(",")][: args.max_calls]
    stt = FasterWhisperSTT(models.resolve("whisper-tiny.en"), cpu_threads=1)
    work = Path(tempfile.mkdtemp(prefix="trunkline-evals-"))
    state_dir = work / "storesim"
    place = SimPlace(
        ssh=("127.0.0.1", SIM_SSH),
        http=("127.0.0.1", SIM_HTTP),
        state_dir=state_dir,
        phone_sip=("127.0.0.1", PHONE_SIP),
        phone_rtp_ports=PHONE_RTP,
    )
    stack = None
    if args.server:
        api = AgentApi(args.server, args.api_key or os.environ.get("TRUNKLINE_API_KEY"))
    else:
        # The simulator's host key must exist before the agent reads known_hosts: one
        # short-lived start writes it (the key is kept in state_dir for every case).
        from agent.storesim.runner import StoreSim

        async with StoreSim(
            state_dir=state_dir, ssh_port=SIM_SSH, http_port=SIM_HTTP, scenario="demo"
        ):
            pass
        key = _admin_key(work / "home")
        stack = await _start_agent(work / "home", state_dir)
        api = AgentApi(stack.base, key)
    results: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        for workflow, persona in pairs:
            left = args.max_minutes * 60 - (time.monotonic() - started)
            if left < min(args.call_timeout, 240):  # a cut-short call would judge nothing
                print(f"time budget spent; {len(pairs) - len(results)} case(s) not run")
                break
            print(f"{workflow} x {persona} ...", flush=True)
            try:
                result = await run_case(
                    workflow,
                    persona,
                    api,
                    stt=stt,
                    place=place,
                    timeout_s=min(args.call_timeout, left),
                )
            except Exception as exc:  # one broken case must not lose the others' results
                result = {
                    "workflow": workflow,
                    "persona": persona,
                    "error": f"{type(exc).__name__}: {exc}",
                }
            results.append(result)
            print(
                f"  -> {result.get('outcome')} (expected {result.get('expected_outcome')}), "
                f"steps {result.get('step_score')}, {result.get('duration_s')} s "
                f"{result.get('error') or ''}",
                flush=True,
            )
    finally:
        if stack is not None:
            await stop_stack(stack)
    ran = [r for r in results if "error" not in r]
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, CPU only",
        "agent": args.server or "trunkline serve --no-ray (embedded CPU models)",
        "planned": len(pairs),
        "results": results,
        "summary": summarise(ran),
        "errors": [r for r in results if "error" in r],
        "wall_s": round(time.monotonic() - started, 1),
    }


def render(report: dict[str, Any]) -> str:
    summary = report["summary"]
    lines = [
        "# Workflow x persona evals (CPU)",
        "",
        "Maya calls a simulated store about a ticket over real SIP; the store's phone is a",
        "simulated employee (`agent/storesim/phone.py`: Whisper tiny.en ears, espeak-ng voice,",
        "physical actions on the store simulator). Produced by `python benchmarks/evals.py`.",
        "",
        f"- machine: {report['machine']}",
        f"- agent: {report['agent']}",
        f"- calls run: {summary.get('calls', 0)} of {report['planned']} planned"
        f" ({len(report['errors'])} could not run); wall time {report['wall_s']} s",
        "",
        "| metric | value | seed target |",
        "| --- | --- | --- |",
    ]
    for name in (
        "resolvable_resolution_rate",
        "resolution_rate",
        "expected_outcome_rate",
        "correct_step_rate",
        "exact_path_rate",
        "mean_agent_turns",
        "mean_duration_s",
    ):
        target = TARGETS.get(name)
        lines.append(f"| {name} | {summary.get(name, '-')} | {target if target else ''} |")
    lines += [
        "",
        "resolvable_resolution_rate is the seed's call resolution rate (calls the AI",
        "completes alone) over the cases a correct call resolves; resolution_rate counts",
        "resolved calls over all calls, though some cases' right outcome is an escalation",
        "(printer_error's hard fault, refuses-a-machine) or a callback (no_paper_stock);",
        "expected_outcome_rate counts the right outcome.",
        "",
        "| workflow | persona | outcome | expected | step score | agent turns | store turns |"
        " duration s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["results"]:
        if "error" in r:
            lines.append(f"| {r['workflow']} | {r['persona']} | error: {r['error'][:80]} |"
                         " | | | | |")  # fmt: skip
            continue
        lines.append(
            f"| {r['workflow']} | {r['persona']} | {r['outcome']} | {r['expected_outcome']} | "
            f"{r['step_score']} | {r['agent_turns']} | {r['phone_turns']} | {r['duration_s']} |"
        )
    lines += ["", "Steps taken where they differ from the expected path:", ""]
    for r in report["results"]:
        if "error" not in r and not r["path_ok"]:
            taken = " > ".join(s.split(".", 1)[-1] for s in r["steps"]) or "-"
            lines.append(f"- {r['workflow']} x {r['persona']}: {taken}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflows", default="", help="comma list (default: all)")
    parser.add_argument("--personas", default="", help="comma list (default: all)")
    parser.add_argument("--cases", default="", help="WORKFLOW:PERSONA,... (overrides both)")
    parser.add_argument("--max-calls", type=int, default=35)
    parser.add_argument("--call-timeout", type=float, default=420.0)
    parser.add_argument("--max-minutes", type=float, default=25.0)
    parser.add_argument("--server", default="", help="use this running agent instead")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "evals-cpu.md")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    args.out.write_text(render(report))
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str))
    print(render(report))


if __name__ == "__main__":
    main()
