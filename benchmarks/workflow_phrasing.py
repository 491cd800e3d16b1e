"""What Maya's workflow turns cost on the CPU profile, per step of KBA3813:

    python benchmarks/workflow_phrasing.py [--rounds 3] [--out FILE]

- classify: the LLM picking the caller's branch (agent/workflows/llm_classifier.py);
- phrase (style): the StylePhraser (no model);
- phrase (LLM): the LLMPhraser rewrite, and how often its output failed the
  faithfulness guard (then the canonical text is said, after the time was spent).
Model: the embedded Qwen2.5-Coder-0.5B (llama.cpp). Writes a markdown table (p50/max).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import models
from agent.workflows import load_library
from agent.workflows.engine import NOT_YET, NOT_YET_MEANS
from agent.workflows.llm_classifier import LLMClassifier
from agent.workflows.personality import AdaptivePersonality
from agent.workflows.phraser import LLMPhraser, StylePhraser
from serving.llm.llama_cpp_engine import LlamaCppLLM

RESULTS = Path(__file__).parent / "results" / "workflow_phrasing-cpu.md"
MODEL = "qwen2.5-coder-0.5b-instruct"
# (step, a clear caller reply to it)
STEPS = [
    ("ask_for_roll", "Yes, I've got a box of them right here."),
    ("load_paper", "Okay, it's in and the door is closed."),
    ("ask_quality", "Yeah it looks great, nice and dark."),
]


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} / {max(values) * 1000:.0f}"


async def measure(rounds: int) -> list[str]:
    llm = LlamaCppLLM(models.resolve(MODEL), n_ctx=2048)
    library = load_library()
    workflow = library["KBA3813"]
    classifier = LLMClassifier(llm)
    rows = []
    try:
        for step_id, reply in STEPS:
            step = workflow.step(step_id)
            text = (step.text or "").replace("{lane}", "4")
            branches = {b.name: b.described for b in step.branches}  # as the engine
            if step.kind == "wait":
                branches[NOT_YET] = NOT_YET_MEANS
            times: dict[str, list[float]] = {"classify": [], "style": [], "llm": []}
            refused = 0
            for _ in range(rounds):
                start = time.perf_counter()
                await classifier.classify(text, reply, branches)
                times["classify"].append(time.perf_counter() - start)
                style = StylePhraser(AdaptivePersonality())
                start = time.perf_counter()
                await style.phrase(text, step=step, attempt=0)
                times["style"].append(time.perf_counter() - start)
                phraser = LLMPhraser(llm, AdaptivePersonality(), timeout_s=30.0)
                start = time.perf_counter()
                await phraser.phrase(text, step=step, attempt=0)
                times["llm"].append(time.perf_counter() - start)
                refused += phraser.fallbacks
            rows.append(
                f"| {step_id} | {_ms(times['classify'])} | {_ms(times['style'])} | "
                f"{_ms(times['llm'])} | {refused}/{rounds} |"
            )
    finally:
        llm.close()
    return rows


def main(rounds: int, out: Path) -> None:
    rows = asyncio.run(measure(rounds))
    lines = [
        "# Workflow turn costs on CPU (KBA3813)",
        "",
        f"Model {MODEL} (llama.cpp), {rounds} rounds per step, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}; shared machine, other work running.",
        "Times are p50 / max in ms.",
        "",
        "| step | classify | phrase (style) | phrase (LLM) | LLM rewrite refused |",
        "| --- | --- | --- | --- | --- |",
        *rows,
        "",
        "The LLM rewrite adds its whole time to every turn before Maya can speak, and the",
        "0.5B model's rewrites are often refused by the faithfulness guard (the canonical",
        "text is then said anyway): `stores.phrase_with_llm` is off by default on CPU.",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    main(max(1, min(args.rounds, 20)), args.out)
