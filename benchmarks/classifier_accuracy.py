"""How often the production reply classifier picks the right label, on a labelled set:

    python benchmarks/classifier_accuracy.py [--split dev|test|holdout|all] [--limit N]
                                             [--out benchmarks/results/classifier_accuracy-cpu.md]

The classifier is the one a call uses: GuardedClassifier(LLMClassifier(...)) on the
embedded Qwen2.5-Coder-0.5B (llama.cpp, CPU). The cases (tests/workflows/
classifier_cases.yaml) are caller replies at every ask/wait step of the shipped workflows,
in the personas' manner and as phone transcripts. A reply is right when its label is the
expected one or one the case also accepts (a question back may be unclear or off_topic).
Reported: accuracy per split, workflow and persona style, the misses' confusion, and
p50/p95 time per classification. Writes the markdown and a .json next to it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import models
from agent.workflows import load_library
from agent.workflows.engine import NOT_YET, NOT_YET_MEANS
from agent.workflows.guard import GuardedClassifier
from agent.workflows.llm_classifier import LLMClassifier
from serving.llm.llama_cpp_engine import LlamaCppLLM

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "workflows" / "classifier_cases.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "classifier_accuracy-cpu.md"
MODEL = "qwen2.5-coder-0.5b-instruct"
LANE = 4


def load_cases(path: Path = CASES) -> list[dict[str, Any]]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["cases"]


def step_question(library: dict[str, Any], workflow: str, step_id: str) -> tuple[str, dict]:
    """The question and options exactly as the engine passes them to the classifier."""
    step = library[workflow].step(step_id)
    options = {b.name: b.described for b in step.branches}
    if step.kind == "wait":
        options[NOT_YET] = NOT_YET_MEANS
    return (step.text or "").format(lane=LANE), options


async def classify_all(cases: list[dict[str, Any]], llm: Any) -> list[dict[str, Any]]:
    library = load_library()
    classifier = GuardedClassifier(LLMClassifier(llm))
    results = []
    seen: set[tuple[str, str]] = set()
    # Step by step: a step's first reply pays for its prompt (cold, as on most call turns);
    # its later ones find the prompt prefix in the KV cache (warm, as on a re-ask).
    for case in sorted(cases, key=lambda c: (c["workflow"], c["step"])):
        cold = (case["workflow"], case["step"]) not in seen
        seen.add((case["workflow"], case["step"]))
        question, options = step_question(library, case["workflow"], case["step"])
        start = time.perf_counter()
        label = await classifier.classify(question, case["reply"], options)
        elapsed = time.perf_counter() - start
        accepted = {case["label"], *case.get("accept", ())}
        results.append(
            {**case, "got": label, "ok": label in accepted, "s": round(elapsed, 4), "cold": cold}
        )
    return results


def _rate(rows: list[dict[str, Any]]) -> str:
    right = sum(r["ok"] for r in rows)
    return f"{right}/{len(rows)} ({100 * right / len(rows):.1f}%)" if rows else "-"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    def by(key: str) -> dict[str, dict[str, Any]]:
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in results:
            groups[r[key]].append(r)
        return {
            name: {"right": sum(r["ok"] for r in rows), "cases": len(rows)}
            for name, rows in sorted(groups.items())
        }

    times = [r["s"] for r in results]
    cold = [r["s"] for r in results if r["cold"]]
    misses = Counter(f"{r['label']} -> {r['got']}" for r in results if not r["ok"])
    return {
        "cases": len(results),
        "right": sum(r["ok"] for r in results),
        "strict_right": sum(r["got"] == r["label"] for r in results),
        "by_split": by("split"),
        "by_workflow": by("workflow"),
        "by_style": by("style"),
        "confusion": dict(misses.most_common()),
        "p50_ms": round(statistics.median(times) * 1000) if times else None,
        "p95_ms": round(_pct(times, 0.95) * 1000) if times else None,
        "cold_p50_ms": round(statistics.median(cold) * 1000) if cold else None,
        "cold_max_ms": round(max(cold) * 1000) if cold else None,
    }


def render(report: dict[str, Any]) -> str:
    s = report["summary"]

    def table(title: str, groups: dict[str, dict[str, Any]]) -> list[str]:
        lines = [f"| {title} | right | cases | accuracy |", "| --- | --- | --- | --- |"]
        for name, g in groups.items():
            acc = 100 * g["right"] / g["cases"]
            lines.append(f"| {name} | {g['right']} | {g['cases']} | {acc:.1f}% |")
        return [*lines, ""]

    lines = [
        "# Reply classifier accuracy (CPU)",
        "",
        "GuardedClassifier(LLMClassifier(embedded qwen2.5-coder-0.5b-instruct, llama.cpp)) on",
        "the labelled replies in tests/workflows/classifier_cases.yaml. Produced by",
        "`python benchmarks/classifier_accuracy.py`.",
        "",
        f"- machine: {report['machine']}",
        f"- split measured: {report['split']}; {s['cases']} cases; wall time {report['wall_s']} s",
        f"- right: {s['right']}/{s['cases']} ({100 * s['right'] / max(1, s['cases']):.1f}%); "
        f"exactly the expected label: {s['strict_right']}",
        f"- classification time: p50 {s['p50_ms']} ms, p95 {s['p95_ms']} ms over all replies;"
        f" a step's first reply (its prompt not cached yet): p50 {s['cold_p50_ms']} ms,"
        f" max {s['cold_max_ms']} ms",
        "",
        *table("split", s["by_split"]),
        *table("workflow", s["by_workflow"]),
        *table("persona style", s["by_style"]),
        "Misses (expected -> got):",
        "",
        *[f"- {k}: {v}" for k, v in s["confusion"].items()],
        "",
        "| split | workflow.step | reply | expected | got |",
        "| --- | --- | --- | --- | --- |",
        *[
            f"| {r['split']} | {r['workflow']}.{r['step']} | {r['reply']} | {r['label']} | "
            f"{r['got']} |"
            for r in report["results"]
            if not r["ok"]
        ],
    ]
    if report.get("notes"):
        lines += ["", *report["notes"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("dev", "test", "holdout", "all"), default="all")
    parser.add_argument("--limit", type=int, default=0, help="at most N cases (0: all)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--notes", type=Path, help="markdown appended to the report")
    args = parser.parse_args()
    cases = [c for c in load_cases() if args.split in ("all", c["split"])]
    if args.limit > 0:
        cases = cases[: args.limit]
    llm = LlamaCppLLM(models.resolve(MODEL), n_ctx=2048)  # as the CPU profile runs it
    started = time.monotonic()
    try:
        results = asyncio.run(classify_all(cases, llm))
    finally:
        llm.close()
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, CPU only "
        "(shared with other work)",
        "model": MODEL,
        "split": args.split,
        "wall_s": round(time.monotonic() - started, 1),
        "summary": summarise(results),
        "results": results,
        "notes": args.notes.read_text().splitlines() if args.notes else [],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = render(report)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
