"""Signed webhook deliveries (goal completions), and how a receiver checks them.

Every POST carries a JSON body and

    X-Trunkline-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
    X-Trunkline-Event: goal.completed
    X-Trunkline-Delivery: <id, the same on every retry of one delivery: dedupe on it>

The secret comes from $TRUNKLINE_WEBHOOK_SECRET or the file named by
$TRUNKLINE_WEBHOOK_SECRET_FILE (`webhook_secret_from_env`); without one nothing is
sent, and the delivery says why. A receiver verifies with the raw body, before
parsing it:

    from agent.controlplane.webhooks import InvalidSignature, verify_signature

    try:
        verify_signature(secret, request.headers["X-Trunkline-Signature"], raw_body)
    except InvalidSignature:
        return 401

The timestamp is signed too, so `tolerance_s` bounds how long a captured request can
be replayed; each retry is signed afresh. Connection errors, timeouts, 408, 429 and
5xx answers are retried with exponential backoff, within `max_attempts` and a total
time bound; any other answer is final. Redirects are not followed: a webhook URL that
moved is a configuration error, and following it would send the body elsewhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Trunkline-Signature"
EVENT_HEADER = "X-Trunkline-Event"
DELIVERY_HEADER = "X-Trunkline-Delivery"
SECRET_ENV = "TRUNKLINE_WEBHOOK_SECRET"
SECRET_FILE_ENV = "TRUNKLINE_WEBHOOK_SECRET_FILE"
DEFAULT_TOLERANCE_S = 300.0
_RETRY_STATUSES = frozenset({408, 429})
MAX_ERROR_CHARS = 300


class WebhookConfigError(ValueError):
    """The webhook secret is configured wrongly (both variables, an empty secret...)."""


class InvalidSignature(ValueError):
    """A request's signature header is missing, malformed, stale or does not match."""


def webhook_secret_from_env(env: Mapping[str, str] | None = None) -> bytes | None:
    """The signing secret from $TRUNKLINE_WEBHOOK_SECRET or $..._FILE; None if neither.

    A file's trailing newline is not part of the secret."""
    env = os.environ if env is None else env
    value, path = env.get(SECRET_ENV), env.get(SECRET_FILE_ENV)
    if value and path:
        raise WebhookConfigError(f"set {SECRET_ENV} or {SECRET_FILE_ENV}, not both")
    if path:
        try:
            value = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise WebhookConfigError(
                f"{SECRET_FILE_ENV}: cannot read {path}: {type(exc).__name__}"
            ) from None
        if not value:
            raise WebhookConfigError(f"{SECRET_FILE_ENV}: {path} is empty")
    return value.encode("utf-8") if value else None


def _as_bytes(secret: bytes | str) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def signature(secret: bytes | str, body: bytes, timestamp: int) -> str:
    """The hex HMAC-SHA256 of "<timestamp>.<body>"."""
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(_as_bytes(secret), message, hashlib.sha256).hexdigest()


def signature_header(secret: bytes | str, body: bytes, timestamp: int | None = None) -> str:
    """The X-Trunkline-Signature value for `body`, signed now (or at `timestamp`)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={signature(secret, body, t)}"


def verify_signature(
    secret: bytes | str,
    header: str | None,
    body: bytes,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    *,
    now: float | None = None,
) -> None:
    """Check an X-Trunkline-Signature header against the raw request `body`.

    Raises InvalidSignature (with the reason) unless the header holds a timestamp no
    more than `tolerance_s` away from now and a v1 signature of it and the body made
    with `secret`. Several v1 values are allowed (any may match), so a sender can sign
    with an old and a new secret while the secret is rotated."""
    if not header:
        raise InvalidSignature(f"no {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise InvalidSignature(f"malformed {SIGNATURE_HEADER} header")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise InvalidSignature("the signature timestamp is not an integer") from None
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise InvalidSignature(f"{SIGNATURE_HEADER} needs t=<unix time> and v1=<hex hmac>")
    age = (time.time() if now is None else now) - timestamp
    if abs(age) > tolerance_s:
        raise InvalidSignature(
            f"the signature timestamp is {abs(age):.0f} s off (tolerance {tolerance_s:g} s)"
        )
    expected = signature(secret, body, timestamp)
    # compare_digest on every candidate: the time taken says nothing about the secret.
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise InvalidSignature("the signature does not match the body")


def redact_url(url: str) -> str:
    """The URL for logs and records: query and credentials can carry tokens."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass
class Delivery:
    """What happened to one webhook: stored with the call's goal results."""

    url: str  # redacted (no query, no credentials)
    event: str
    delivery_id: str
    delivered: bool
    attempts: int
    status_code: int | None  # of the last answer; None if none came
    error: str | None  # why it was not delivered (last attempt's failure)
    duration_s: float
    finished_at: str  # ISO 8601, UTC

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class WebhookSender:
    """POSTs signed JSON with bounded retries; `deliver` never raises for the receiver's
    failures, it returns a Delivery saying what happened."""

    def __init__(
        self,
        secret: bytes | str | None,
        *,
        max_attempts: int = 5,
        timeout_s: float = 5.0,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        total_timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if max_attempts < 1 or timeout_s <= 0 or backoff_s < 0 or total_timeout_s <= 0:
            raise ValueError(
                "max_attempts must be >= 1, timeout_s and total_timeout_s > 0, backoff_s >= 0"
            )
        self._secret = _as_bytes(secret) if secret else None
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.total_timeout_s = total_timeout_s
        self._transport = transport

    @classmethod
    def from_env(cls, **kwargs: Any) -> WebhookSender:
        return cls(webhook_secret_from_env(), **kwargs)

    @property
    def has_secret(self) -> bool:
        return self._secret is not None

    async def deliver(self, url: str, payload: Mapping[str, Any], *, event: str) -> Delivery:
        started = time.monotonic()
        delivery_id = uuid.uuid4().hex
        shown = redact_url(url)

        def done(delivered: bool, attempts: int, status: int | None, error: str | None) -> Delivery:
            result = Delivery(
                url=shown,
                event=event,
                delivery_id=delivery_id,
                delivered=delivered,
                attempts=attempts,
                status_code=status,
                error=error[:MAX_ERROR_CHARS] if error else None,
                duration_s=round(time.monotonic() - started, 3),
                finished_at=datetime.now(UTC).isoformat(),
            )
            level = logging.INFO if delivered else logging.WARNING
            log.log(level, "webhook %s %s to %s: %s", event, delivery_id, shown, error or "ok")
            return result

        if self._secret is None:
            return done(False, 0, None, f"not sent: no webhook secret ({SECRET_ENV}[_FILE])")
        if urlsplit(url).scheme not in ("http", "https"):
            return done(False, 0, None, "not sent: the URL is not http(s)")
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        deadline = started + self.total_timeout_s
        status: int | None = None
        error: str | None = None
        attempts = 0
        async with httpx.AsyncClient(
            transport=self._transport, follow_redirects=False, trust_env=False
        ) as client:
            for attempt in range(1, self.max_attempts + 1):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                attempts = attempt
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": "trunkline-webhooks/1",
                    EVENT_HEADER: event,
                    DELIVERY_HEADER: delivery_id,
                    SIGNATURE_HEADER: signature_header(self._secret, body),
                }
                retry_after: float | None = None
                try:
                    response = await client.post(
                        url, content=body, headers=headers, timeout=min(self.timeout_s, remaining)
                    )
                except httpx.HTTPError as exc:
                    status = None
                    error = f"{type(exc).__name__}: {exc}".rstrip(": ")
                else:
                    status = response.status_code
                    if 200 <= status < 300:
                        return done(True, attempt, status, None)
                    error = f"HTTP {status}"
                    if status not in _RETRY_STATUSES and status < 500:
                        break  # the receiver refused it: sending it again changes nothing
                    retry_after = _retry_after(response.headers.get("Retry-After"))
                if attempt == self.max_attempts:
                    break
                pause = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
                pause *= random.uniform(0.8, 1.2)  # receivers recovering see no herd
                if retry_after is not None:
                    pause = max(pause, min(retry_after, self.max_backoff_s))
                if time.monotonic() + pause >= deadline:
                    error = f"{error}; gave up: the {self.total_timeout_s:g} s bound was reached"
                    break
                await asyncio.sleep(pause)
        return done(False, attempts, status, error)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:  # an HTTP date: not worth parsing for a bounded pause
        return None
