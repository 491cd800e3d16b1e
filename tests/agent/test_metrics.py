"""Prometheus metrics: what a scrape of `/metrics` shows after some calls."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI, Response
from prometheus_client.parser import text_string_to_metric_families

from agent.metrics import METRICS, CallMetrics, render_metrics
from agent.records import TurnRecord


def _samples(metrics: CallMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse the rendered text as a scraper would: (name, labels) -> value."""
    body, _ = metrics.render()
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_calls_turns_barge_ins_and_errors_are_counted() -> None:
    metrics = CallMetrics()
    for _ in range(3):
        metrics.call_started()
    metrics.call_ended("caller_hangup")
    metrics.call_ended("max_duration")
    metrics.observe_turn(
        TurnRecord(
            index=2,
            speaker="agent",
            text="Let me check.",
            interrupted=True,
            turn_latency_ms=710.0,
            stt_ms=180.0,
            llm_ttft_ms=240.0,
            tts_ttfa_ms=120.0,
        )
    )
    metrics.observe_turn_latency(1.7)
    metrics.observe_stage("end_of_turn", 0.3)
    metrics.model_error("llm", "timeout")
    metrics.model_error("llm", "timeout")
    metrics.model_error("tts", "unavailable")

    s = _samples(metrics)
    assert s[("trunkline_calls_active", ())] == 1
    assert s[("trunkline_calls_total", (("end_reason", "caller_hangup"),))] == 1
    assert s[("trunkline_calls_total", (("end_reason", "max_duration"),))] == 1
    assert s[("trunkline_turn_latency_seconds_count", ())] == 2
    assert s[("trunkline_turn_latency_seconds_sum", ())] == pytest.approx(2.41)
    # 0.71 s lands in the 0.8 s bucket, 1.7 s only from the 2 s bucket on.
    assert s[("trunkline_turn_latency_seconds_bucket", (("le", "0.8"),))] == 1
    assert s[("trunkline_turn_latency_seconds_bucket", (("le", "2.0"),))] == 2
    for stage in ("stt", "llm_ttft", "tts_ttfa", "end_of_turn"):
        assert s[("trunkline_turn_stage_seconds_count", (("stage", stage),))] == 1
    assert s[("trunkline_turn_stage_seconds_sum", (("stage", "stt"),))] == pytest.approx(0.18)
    assert s[("trunkline_barge_ins_total", ())] == 1
    assert s[("trunkline_model_errors_total", (("engine", "llm"), ("kind", "timeout")))] == 2
    assert s[("trunkline_model_errors_total", (("engine", "tts"), ("kind", "unavailable")))] == 1


def test_registries_are_separate() -> None:
    first, second = CallMetrics(), CallMetrics()
    first.call_started()
    assert _samples(second)[("trunkline_calls_active", ())] == 0
    # Only trunkline's own metrics: no default process/python collectors leak in.
    assert all(name.startswith("trunkline_") for name, _ in _samples(first))


def test_unbounded_label_values_are_refused() -> None:
    metrics = CallMetrics()
    with pytest.raises(ValueError, match="unknown engine"):
        metrics.model_error("gpt-4", "timeout")
    with pytest.raises(ValueError, match="kind label"):
        metrics.model_error("llm", "Connection refused by 10.0.0.3:8000")
    with pytest.raises(ValueError, match="unknown stage"):
        metrics.observe_stage("coffee", 1.0)
    with pytest.raises(ValueError, match="end_reason label"):
        metrics.call_ended("")


async def test_metrics_route_serves_the_exposition_format() -> None:
    app = FastAPI()

    @app.get("/metrics")
    def metrics_route() -> Response:
        body, content_type = render_metrics()
        return Response(body, media_type=content_type)

    METRICS.model_error("stt", "timeout")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        resp = await client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain; version=")
    assert 'trunkline_model_errors_total{engine="stt",kind="timeout"}' in resp.text
