"""Prometheus metrics for calls, in a registry of their own.

A dedicated registry (not prometheus-client's global one) keeps `/metrics` to
what trunkline means, lets tests build a fresh `CallMetrics` each time, and
lets several agents in one process (tests, one-box installs) stay apart.

Label values are checked against small fixed vocabularies: a free-form label
(say, an exception message) would create a new time series per value.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

if TYPE_CHECKING:
    from agent.records.schema import TurnRecord

# Voice turn latencies: tens of ms (a cached stage) to seconds (a slow CPU turn).
LATENCY_BUCKETS_S = (0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.65, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)

# Stages of a turn's latency trace (ARCHITECTURE.md, "Every turn records a latency trace").
STAGES = ("end_of_turn", "stt", "llm_ttft", "first_sentence", "tts_ttfa", "send")
ENGINES = ("stt", "llm", "tts", "vad", "turn")
_LABEL = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def _check_label(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _LABEL.match(value):
        raise ValueError(f"{kind} label must be a short snake_case word, got {value!r}")
    return value


class CallMetrics:
    """All call metrics, registered in `self.registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.calls_active = Gauge(
            "trunkline_calls_active", "Calls in progress right now.", registry=r
        )
        self.calls_total = Counter(
            "trunkline_calls",
            "Calls ended, by end reason.",
            ["end_reason"],
            registry=r,
        )
        self.turn_latency = Histogram(
            "trunkline_turn_latency_seconds",
            "End of caller speech to the first agent audio packet sent.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.stage_latency = Histogram(
            "trunkline_turn_stage_seconds",
            "Time spent in one stage of a turn.",
            ["stage"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.barge_ins = Counter(
            "trunkline_barge_ins", "Agent speech cut off by the caller.", registry=r
        )
        self.model_errors = Counter(
            "trunkline_model_errors",
            "Model server failures seen by the agent, by engine and kind.",
            ["engine", "kind"],
            registry=r,
        )
        self.records_spooled = Counter(
            "trunkline_call_records_spooled",
            "Call record writes that went to the spool directory (database unavailable).",
            registry=r,
        )

    # ------------------------------------------------------------ calls

    def call_started(self) -> None:
        self.calls_active.inc()

    def call_ended(self, end_reason: str) -> None:
        self.calls_active.dec()
        self.calls_total.labels(end_reason=_check_label("end_reason", end_reason)).inc()

    # ------------------------------------------------------------ turns

    def observe_turn_latency(self, seconds: float) -> None:
        self.turn_latency.observe(seconds)

    def observe_stage(self, stage: str, seconds: float) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; one of {STAGES}")
        self.stage_latency.labels(stage=stage).observe(seconds)

    def observe_turn(self, turn: TurnRecord) -> None:
        """Feed the histograms from a finished turn's key latency columns (ms)."""
        if turn.turn_latency_ms is not None:
            self.observe_turn_latency(turn.turn_latency_ms / 1000)
        for stage, value in (
            ("stt", turn.stt_ms),
            ("llm_ttft", turn.llm_ttft_ms),
            ("tts_ttfa", turn.tts_ttfa_ms),
        ):
            if value is not None:
                self.observe_stage(stage, value / 1000)
        if turn.interrupted:
            self.barge_in()

    def barge_in(self) -> None:
        self.barge_ins.inc()

    # ------------------------------------------------------------ failures

    def model_error(self, engine: str, kind: str) -> None:
        """`kind`: a short word such as "timeout", "unavailable", "bad_output"."""
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; one of {ENGINES}")
        self.model_errors.labels(engine=engine, kind=_check_label("kind", kind)).inc()

    def record_spooled(self) -> None:
        self.records_spooled.inc()

    # ------------------------------------------------------------ exposition

    def render(self) -> tuple[bytes, str]:
        """The `/metrics` body and its Content-Type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


# The process-wide instance the agent and its `/metrics` route share.
METRICS = CallMetrics()


def render_metrics(metrics: CallMetrics = METRICS) -> tuple[bytes, str]:
    return metrics.render()
