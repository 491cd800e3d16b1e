"""Signed webhooks against a real receiver (uvicorn on 127.0.0.1, ports 19250-19499)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from agent.controlplane.webhooks import (
    DELIVERY_HEADER,
    InvalidSignature,
    WebhookConfigError,
    WebhookSender,
    signature_header,
    verify_signature,
    webhook_secret_from_env,
)
from tests.controlplane.console_fixtures import Receiver, free_port, running

SECRET = b"whsec-test-5f1d0c"
PAYLOAD = {"event": "goal.completed", "goal": {"name": "schedule_appointment"}, "note": "Zürich"}


def sender(**options: float) -> WebhookSender:
    # Short pauses: the test checks the retry, not the production pacing.
    settings = {"backoff_s": 0.05, "max_backoff_s": 0.2, "timeout_s": 5.0, **options}
    return WebhookSender(SECRET, **settings)  # type: ignore[arg-type]


async def test_a_signed_delivery_is_retried_after_a_500_and_verified() -> None:
    async with running(Receiver(SECRET, statuses=[500])) as receiver:
        delivery = await sender().deliver(receiver.url, PAYLOAD, event="goal.completed")

    assert delivery.delivered and delivery.attempts == 2 and delivery.status_code == 200
    assert len(receiver.received) == 2
    assert all(r.verified for r in receiver.received), [r.why for r in receiver.received]
    assert all(r.json == PAYLOAD for r in receiver.received)
    # One delivery id across the retries, so the receiver can drop the duplicate.
    ids = {r.headers[DELIVERY_HEADER.lower()] for r in receiver.received}
    assert ids == {delivery.delivery_id}
    # The stored URL has no query: tokens in it stay out of records and logs.
    assert delivery.url == f"http://127.0.0.1:{receiver.port}/hooks/goal"


async def test_a_refusal_is_final_and_a_dead_receiver_is_retried_within_bounds() -> None:
    async with running(Receiver(SECRET, statuses=[410])) as receiver:
        refused = await sender().deliver(receiver.url, PAYLOAD, event="goal.completed")
    assert not refused.delivered and refused.attempts == 1
    assert refused.status_code == 410 and refused.error == "HTTP 410"

    dead = f"http://127.0.0.1:{free_port()}/hooks/goal"
    started = time.monotonic()
    failed = await sender(total_timeout_s=10).deliver(dead, PAYLOAD, event="goal.completed")
    assert not failed.delivered and failed.attempts == 5 and failed.status_code is None
    assert "ConnectError" in (failed.error or "")
    assert time.monotonic() - started < 10


async def test_the_total_time_bound_stops_retries() -> None:
    async with running(Receiver(SECRET, statuses=[503] * 10)) as receiver:
        slow = sender(backoff_s=0.4, max_backoff_s=0.4, total_timeout_s=1.0)
        delivery = await slow.deliver(receiver.url, PAYLOAD, event="goal.completed")
    assert not delivery.delivered and 1 <= delivery.attempts < 5
    assert "gave up" in (delivery.error or "")


async def test_without_a_secret_nothing_is_sent() -> None:
    async with running(Receiver(SECRET)) as receiver:
        delivery = await WebhookSender(None).deliver(receiver.url, PAYLOAD, event="goal.completed")
    assert not delivery.delivered and delivery.attempts == 0
    assert "TRUNKLINE_WEBHOOK_SECRET" in (delivery.error or "")
    assert receiver.received == []


async def test_a_receiver_with_another_secret_refuses_it() -> None:
    async with running(Receiver(b"another-secret")) as receiver:
        delivery = await sender().deliver(receiver.url, PAYLOAD, event="goal.completed")
    assert not delivery.delivered and delivery.status_code == 401
    assert receiver.received[0].why == "the signature does not match the body"


def test_verify_signature_rejects_what_it_should() -> None:
    body = json.dumps(PAYLOAD).encode()
    now = 1_800_000_000
    good = signature_header(SECRET, body, now)
    verify_signature(SECRET, good, body, now=now)
    verify_signature(SECRET.decode(), good, body, now=now + 299)

    cases = {
        "no X-Trunkline-Signature header": (good, None),
        "does not match the body": (good, body + b" "),
        "s off (tolerance 300 s)": (signature_header(SECRET, body, now - 301), body),
        "malformed": ("garbage", body),
        "needs t=<unix time>": ("t=1,v2=abc", body),
        "not an integer": ("t=soon,v1=abc", body),
    }
    for reason, (header, sent) in cases.items():
        with pytest.raises(InvalidSignature, match=re.escape(reason)):
            verify_signature(SECRET, header if sent is not None else None, sent or body, now=now)
    # Rotation: a header signed with the old and the new secret passes with either.
    old = signature_header(b"old-secret", body, now).split(",")[1]
    verify_signature(b"old-secret", f"{good},{old}", body, now=now)
    verify_signature(SECRET, f"{good},{old}", body, now=now)


def test_the_secret_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    assert webhook_secret_from_env({}) is None
    assert webhook_secret_from_env({"TRUNKLINE_WEBHOOK_SECRET": "s3cret"}) == b"s3cret"
    path = tmp_path / "secret"
    path.write_text("from-file\n")
    env = {"TRUNKLINE_WEBHOOK_SECRET_FILE": str(path)}
    assert webhook_secret_from_env(env) == b"from-file"
    with pytest.raises(WebhookConfigError, match="not both"):
        webhook_secret_from_env({**env, "TRUNKLINE_WEBHOOK_SECRET": "x"})
    path.write_text("\n")
    with pytest.raises(WebhookConfigError, match="is empty"):
        webhook_secret_from_env(env)
    with pytest.raises(WebhookConfigError, match="cannot read"):
        webhook_secret_from_env({"TRUNKLINE_WEBHOOK_SECRET_FILE": str(tmp_path / "missing")})
