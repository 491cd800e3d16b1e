"""Serving benchmark: the model engines of a serving profile, measured one request at a time.

    python benchmarks/serving.py [--profile cpu] [--runs 5] [--out FILE.md]

STT: real-time factor (processing time / audio length) on espeak-ng speech.
LLM: time to first token with a cold prompt (new system prompt) and a warm one (same
system prompt, new user turn: served from the prefix cache), and decode tokens/s.
TTS: time to first audio chunk and real-time factor (synthesis time / audio length).
Every engine of the profile that loads on this machine is measured; p50 and p95 are
printed and written, with the machine description, to the results file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from serving.factory import (  # noqa: E402
    EngineSettings,
    ServingConfig,
    build_engine,
    load_config,
    model_label,
    profile_path,
)

UTTERANCES = [
    "Please unplug the receipt printer and wait a moment.",
    "The printer at the front register is showing a red light.",
    "I already restarted the computer but nothing changed.",
    "Can you send a technician to the store tomorrow morning?",
    "The paper is stuck inside the printer again.",
]
TTS_TEXTS = [
    "Thanks for calling. Let's get that printer working again.",
    "Please open the cover and check that the paper roll sits flat.",
    "Now close the cover until it clicks, and press the feed button.",
]
SYSTEM = (
    "You are Maya, a patient support specialist for store receipt printers. "
    "Follow the troubleshooting workflow step by step, ask one question at a time, "
    "and keep every answer under two sentences because it is spoken on a phone call. "
)


@dataclass
class Metric:
    name: str
    unit: str
    values: list[float] = field(default_factory=list)

    def row(self) -> str:
        v = np.asarray(self.values)
        return (
            f"| {self.name} | {np.percentile(v, 50):.3f} | {np.percentile(v, 95):.3f} "
            f"| {self.unit} | {len(v)} |"
        )


@dataclass
class EngineResult:
    kind: str
    label: str
    metrics: list[Metric]
    load_s: float = 0.0
    error: str | None = None


def espeak_pcm(text: str) -> tuple[np.ndarray, int]:
    wav = subprocess.run(
        ["espeak-ng", "--stdout", "--stdin"], input=text.encode(), capture_output=True, check=True
    ).stdout
    from serving.audio import decode_audio

    return decode_audio(wav)


async def bench_stt(engine, runs: int) -> list[Metric]:
    rtf, latency = Metric("STT real-time factor", "x"), Metric("STT latency", "s")
    clips = [espeak_pcm(t) for t in UTTERANCES]
    await engine.transcribe(*clips[0])  # warm-up: first call allocates buffers
    for i in range(runs):
        pcm, rate = clips[i % len(clips)]
        t0 = time.perf_counter()
        await engine.transcribe(pcm, rate)
        elapsed = time.perf_counter() - t0
        latency.values.append(elapsed)
        rtf.values.append(elapsed / (len(pcm) / rate))
    return [rtf, latency]


async def bench_llm(engine, runs: int) -> list[Metric]:
    cold = Metric("LLM TTFT, cold prompt", "s")
    warm = Metric("LLM TTFT, warm prefix", "s")
    decode = Metric("LLM decode", "tok/s")
    cached = Metric("LLM warm prompt tokens from cache", "tokens")

    async def one(system: str, user: str) -> tuple[float, float, int, int]:
        t0 = time.perf_counter()
        first = None
        usage = None
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        async for delta in engine.chat(messages, max_tokens=48):
            if first is None and (delta.text or delta.tool_call):
                first = time.perf_counter() - t0
            usage = delta.usage or usage
        total = time.perf_counter() - t0
        return (
            first or total,
            total,
            usage.completion_tokens if usage else 0,
            (usage.cached_tokens if usage else 0),
        )

    await one("Warm-up.", "Hi")
    for i in range(runs):
        system = f"Session {i} {time.time_ns()}. " + SYSTEM  # new prefix: nothing cached
        ttft, _, _, _ = await one(system, "My printer is not printing.")
        cold.values.append(ttft)
        ttft, total, tokens, from_cache = await one(system, "It shows a red light. What now?")
        warm.values.append(ttft)
        cached.values.append(from_cache)
        if tokens > 1 and total > ttft:
            decode.values.append((tokens - 1) / (total - ttft))
    return [cold, warm, decode, cached]


async def bench_tts(engine, runs: int, voice: str | None) -> list[Metric]:
    first_audio = Metric("TTS time to first audio", "s")
    rtf = Metric("TTS real-time factor", "x")
    async for _ in engine.synthesize("Warm up.", voice):
        pass
    for i in range(runs):
        text = TTS_TEXTS[i % len(TTS_TEXTS)]
        t0 = time.perf_counter()
        first, samples, rate = None, 0, 1
        async for chunk in engine.synthesize(text, voice):
            if first is None:
                first = time.perf_counter() - t0
            samples += len(chunk.pcm)
            rate = chunk.sample_rate
        elapsed = time.perf_counter() - t0
        first_audio.values.append(first or elapsed)
        rtf.values.append(elapsed / max(samples / rate, 1e-6))
    return [first_audio, rtf]


def engine_variants(settings: EngineSettings) -> list[tuple[str, EngineSettings]]:
    """The engine, and its fallback measured on its own."""
    main = settings if settings.fallback is None else _without_fallback(settings)
    variants = [(f"{settings.engine} ({model_label(settings)})", main)]
    if settings.fallback is not None:
        variants.append((f"{settings.fallback.engine} (fallback)", settings.fallback))
    return variants


def _without_fallback(settings: EngineSettings) -> EngineSettings:
    from dataclasses import replace

    return replace(settings, fallback=None)


async def measure(kind: str, engine, runs: int, voice: str | None) -> list[Metric]:
    if kind == "stt":
        return await bench_stt(engine, runs)
    if kind == "llm":
        return await bench_llm(engine, runs)
    return await bench_tts(engine, runs, voice)


def _voice(settings: EngineSettings) -> str | None:
    return settings.options.get("voice_name") or settings.options.get("voice")


async def run_local(config: ServingConfig, runs: int) -> list[EngineResult]:
    """Each engine (and each fallback) in this process, called directly."""
    results: list[EngineResult] = []
    for kind, settings in config.engines.items():
        for label, variant in engine_variants(settings):
            t0 = time.perf_counter()
            try:
                engine = await asyncio.to_thread(build_engine, variant)
            except Exception as exc:  # not installed / no GPU here: report, go on
                results.append(EngineResult(kind, label, [], error=f"{type(exc).__name__}: {exc}"))
                print(f"{kind} {label}: not available: {exc}", flush=True)
                continue
            load_s = time.perf_counter() - t0
            print(f"{kind} {label}: loaded in {load_s:.1f} s", flush=True)
            metrics = await measure(kind, engine, runs, _voice(variant))
            for m in metrics:
                print("   ", m.row(), flush=True)
            results.append(EngineResult(kind, label, metrics, load_s))
            del engine
    return results


async def run_served(config: ServingConfig, runs: int, transport: str) -> list[EngineResult]:
    """The same measurements through a running server: the agent's view, including
    HTTP + SSE (`http`, in-process uvicorn) or Ray Serve handles (`ray`)."""
    from serving.client import http_client, ray_client

    port = _free_port()
    t0 = time.perf_counter()
    if transport == "ray":
        from serving import ray_app

        await asyncio.to_thread(ray_app.run, config, port=port)
        client = await ray_client()
        stop = ray_app.shutdown
    else:
        server, thread = await asyncio.to_thread(_start_local_server, config, port)
        client = await http_client(f"http://127.0.0.1:{port}")

        def stop() -> None:
            server.should_exit = True
            thread.join(timeout=10)

    load_s = time.perf_counter() - t0
    results = []
    try:
        for kind, settings in config.engines.items():
            engine = getattr(client, kind)
            label = f"{settings.engine} ({model_label(settings)}) via {transport}"
            metrics = await measure(kind, engine, runs, _voice(settings))
            for m in metrics:
                print(f"    [{transport}] {m.row()}", flush=True)
            results.append(EngineResult(kind, label, metrics, load_s))
    finally:
        await client.aclose()
        stop()
    return results


def _start_local_server(config: ServingConfig, port: int):
    import threading

    from agent.cli.serve_cmd import make_local_server
    from serving.factory import build_engines
    from serving.http_app import Engines

    server, state = make_local_server(config, "127.0.0.1", port)
    state.engines = Engines(**build_engines(config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(600):
        if server.started:
            break
        time.sleep(0.05)
    return server, thread


def _free_port() -> int:
    import socket

    for port in range(18000, 19000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 18000-18999")


def machine() -> list[str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    load = os.getloadavg()
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores visible",
        f"- RAM: {mem_kb / 1024 / 1024:.1f} GiB",
        f"- OS: {platform.platform()}, Python {platform.python_version()}",
        f"- GPU: {'nvidia-smi present' if shutil.which('nvidia-smi') else 'none'}",
        f"- Load average at the end of the run: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}"
        " (the machine is shared; numbers are noisy)",
    ]


def write_report(path: Path, profile: str, runs: int, results: list[EngineResult]) -> None:
    lines = [
        f"# Serving benchmark: {profile} profile",
        "",
        f"`python benchmarks/serving.py --profile {profile} --runs {runs}`, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. One request at a time, after "
        'one warm-up call each; engines called directly, then ("via http") through the '
        'in-process server\'s routes with serving.client, then ("via ray") through Ray '
        "Serve deployment handles. For the served rows, Load is the whole stack's start.",
        "",
        "## Machine",
        "",
        *machine(),
        "",
    ]
    for r in results:
        lines += [f"## {r.kind}: {r.label}", ""]
        if r.error:
            lines += [f"Not available on this machine: {r.error}", ""]
            continue
        lines += [
            f"Load: {r.load_s:.1f} s",
            "",
            "| metric | p50 | p95 | unit | n |",
            "| --- | --- | --- | --- | --- |",
            *[m.row() for m in r.metrics],
            "",
        ]
    lines += [
        "Real-time factor < 1 means faster than real time. Cold TTFT processes a new "
        "system prompt; warm TTFT reuses the cached prefix of the previous turn.",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--transports",
        default="local,http,ray",
        help="comma list: local (engines called directly), http (in-process server over "
        "HTTP/SSE), ray (Ray Serve deployments through handles)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or REPO / "benchmarks" / "results" / f"serving-{args.profile}.md"
    config = load_config(profile_path(args.profile))
    results: list[EngineResult] = []
    for transport in args.transports.split(","):
        if transport == "local":
            results += asyncio.run(run_local(config, args.runs))
        else:
            results += asyncio.run(run_served(config, args.runs, transport))
    write_report(out, args.profile, args.runs, results)


if __name__ == "__main__":
    main()
