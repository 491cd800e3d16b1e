"""Which calls are live right now, across every agent replica, and their events.

    registry = live_registry_from_env()     # Redis when $REDIS_URL is set, else in-process
    await registry.start()
    await registry.track(session_record)    # a call this replica runs: "started"
    ...                                     # new transcript lines: "turn" events
    await registry.untrack(call_id, outcome="completed")   # "ended"
    await registry.calls()                  # live calls of every replica

With Redis each live call is a key with a TTL that its replica keeps refreshing, so
a replica that crashes stops refreshing and its calls expire instead of staying
"live" forever. Events go out on a pub/sub channel (`subscribe()`).
Everything here is best effort: a registry failure is logged, never ends a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Literal

log = logging.getLogger(__name__)

EventType = Literal["started", "turn", "ended"]
DEFAULT_TTL_S = 15.0
DEFAULT_PREFIX = "trunkline:"
POLL_S = 0.5  # how often tracked calls are checked for new transcript lines
OP_TIMEOUT_S = 1.0  # one Redis round trip; past it the registry gives up (logged)
# After a failure the shared store is skipped this long, so a Redis that hangs costs
# the calls starting meanwhile nothing; the refresh loop re-registers every call after.
DOWN_S = 5.0
MAX_LIVE_LISTED = 10_000  # a bound on one listing, far above any replica set's load
_SUBSCRIBER_QUEUE = 256


@dataclass(frozen=True)
class LiveCall:
    """A live call as every replica sees it (JSON-ready)."""

    call_id: str  # SIP Call-ID
    replica: str
    direction: str
    caller: str
    callee: str
    agent_name: str | None
    started_at: str  # ISO 8601, UTC
    lines: int = 0  # transcript lines so far
    last_speaker: str | None = None
    last_text: str | None = None
    updated_at: float = field(default_factory=time.time)

    @classmethod
    def from_json(cls, raw: str | bytes) -> LiveCall:
        data = json.loads(raw)
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class CallEvent:
    type: EventType
    call_id: str
    replica: str
    at: float  # unix time
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> CallEvent:
        data = json.loads(raw)
        return cls(data["type"], data["call_id"], data["replica"], data["at"], data.get("data", {}))


def default_replica_name() -> str:
    """The pod name under Kubernetes ($HOSTNAME), else host and process id."""
    return os.environ.get("TRUNKLINE_REPLICA") or f"{socket.gethostname()}-{os.getpid()}"


def _snapshot(record: Any, replica: str) -> LiveCall:
    """A session CallRecord (agent.session.record) as it stands now."""
    transcript = list(record.transcript)
    last = transcript[-1] if transcript else None
    return LiveCall(
        call_id=record.call_id,
        replica=replica,
        direction=record.direction,
        caller=record.caller,
        callee=record.callee,
        agent_name=record.agent_name or None,
        started_at=record.started_at.isoformat(),
        lines=len(transcript),
        last_speaker=last.speaker if last else None,
        last_text=last.text if last else None,
    )


class LiveRegistry:
    """Local tracking (polling our own calls' records) over a storage backend.

    Subclasses store the shared view: `_put`, `_delete`, `_list`, `_get`, `_publish`,
    `_events`."""

    def __init__(self, *, replica: str | None = None, ttl_s: float = DEFAULT_TTL_S) -> None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
        self.replica = replica or default_replica_name()
        self.ttl_s = ttl_s
        self._tracked: dict[str, tuple[Any, LiveCall]] = {}  # call_id -> (record, last put)
        self._task: asyncio.Task[None] | None = None
        self._down_until = 0.0  # see DOWN_S

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._keep_fresh(), name="live-registry")

    async def close(self) -> None:
        """Stop refreshing; calls still tracked are removed (this replica is going away)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for call_id in list(self._tracked):
            await self.untrack(call_id)

    async def __aenter__(self) -> LiveRegistry:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ---------------------------------------------------------------- our calls

    async def track(self, record: Any) -> None:
        """Register a call this replica runs; `record` is its live session CallRecord."""
        call = _snapshot(record, self.replica)
        self._tracked[call.call_id] = (record, call)
        await self._safely(partial(self._put, call), "register call %s", call.call_id)
        await self._safely(
            partial(self._publish, self._event("started", call.call_id, asdict(call))),
            "announce call %s",
            call.call_id,
        )

    async def untrack(
        self, call_id: str, *, outcome: str | None = None, end_reason: str | None = None
    ) -> None:
        if self._tracked.pop(call_id, None) is None:
            return
        await self._safely(partial(self._delete, call_id), "unregister call %s", call_id)
        event = self._event("ended", call_id, {"outcome": outcome, "end_reason": end_reason})
        await self._safely(partial(self._publish, event), "announce the end of call %s", call_id)

    # ---------------------------------------------------------------- every replica's

    async def calls(self) -> list[LiveCall]:
        """Live calls of every replica, oldest first."""
        found = await asyncio.wait_for(self._list(), OP_TIMEOUT_S)
        return sorted(found, key=lambda c: (c.started_at, c.call_id))

    async def get(self, call_id: str) -> LiveCall | None:
        return await self._get(call_id)

    async def live_ids(self) -> set[str]:
        return {c.call_id for c in await self.calls()}

    def subscribe(self) -> contextlib.AbstractAsyncContextManager[AsyncIterator[CallEvent]]:
        """`async with registry.subscribe() as events: async for e in events: ...`"""
        return self._events()

    # ---------------------------------------------------------------- internals

    def _event(self, kind: EventType, call_id: str, data: dict[str, Any]) -> CallEvent:
        return CallEvent(kind, call_id, self.replica, time.time(), data)

    async def _safely(self, work: Callable[[], Awaitable[None]], what: str, *args: Any) -> None:
        if time.monotonic() < self._down_until:
            return
        try:
            await asyncio.wait_for(work(), OP_TIMEOUT_S)
        except Exception as exc:  # the call goes on; the listing is only an overview
            self._down_until = time.monotonic() + DOWN_S
            log.warning("live registry: could not " + what + ": %s", *args, exc)

    async def _keep_fresh(self) -> None:
        refresh_every = self.ttl_s / 3
        last_refresh = time.monotonic()
        while True:
            await asyncio.sleep(min(POLL_S, refresh_every))
            refresh = time.monotonic() - last_refresh >= refresh_every
            if refresh:
                last_refresh = time.monotonic()
            for call_id, (record, before) in list(self._tracked.items()):
                try:
                    now = _snapshot(record, self.replica)
                except Exception:
                    log.exception("live registry: cannot read call %s", call_id)
                    continue
                new_lines = now.lines > before.lines
                if not (new_lines or refresh) or call_id not in self._tracked:
                    continue
                self._tracked[call_id] = (record, now)
                await self._safely(partial(self._put, now), "refresh call %s", call_id)
                if new_lines:
                    data = {
                        "lines": now.lines,
                        "new": [
                            {"speaker": e.speaker, "text": e.text, "kind": e.kind}
                            for e in list(record.transcript)[before.lines : now.lines]
                        ],
                    }
                    event = self._event("turn", call_id, data)
                    await self._safely(
                        partial(self._publish, event), "announce a turn of %s", call_id
                    )

    async def _put(self, call: LiveCall) -> None:
        raise NotImplementedError

    async def _delete(self, call_id: str) -> None:
        raise NotImplementedError

    async def _list(self) -> list[LiveCall]:
        raise NotImplementedError

    async def _get(self, call_id: str) -> LiveCall | None:
        raise NotImplementedError

    async def _publish(self, event: CallEvent) -> None:
        raise NotImplementedError

    def _events(self) -> contextlib.AbstractAsyncContextManager[AsyncIterator[CallEvent]]:
        raise NotImplementedError


class InProcessRegistry(LiveRegistry):
    """One replica: the calls of this process only."""

    def __init__(self, *, replica: str | None = None, ttl_s: float = DEFAULT_TTL_S) -> None:
        super().__init__(replica=replica, ttl_s=ttl_s)
        self._calls: dict[str, LiveCall] = {}
        self._subscribers: set[asyncio.Queue[CallEvent]] = set()

    async def _put(self, call: LiveCall) -> None:
        self._calls[call.call_id] = call

    async def _delete(self, call_id: str) -> None:
        self._calls.pop(call_id, None)

    async def _list(self) -> list[LiveCall]:
        return list(self._calls.values())

    async def _get(self, call_id: str) -> LiveCall | None:
        return self._calls.get(call_id)

    async def _publish(self, event: CallEvent) -> None:
        for queue in list(self._subscribers):
            if queue.full():  # a slow listener loses its oldest events, never blocks a call
                queue.get_nowait()
            queue.put_nowait(event)

    @contextlib.asynccontextmanager
    async def _events(self) -> AsyncIterator[AsyncIterator[CallEvent]]:
        queue: asyncio.Queue[CallEvent] = asyncio.Queue(_SUBSCRIBER_QUEUE)
        self._subscribers.add(queue)

        async def events() -> AsyncIterator[CallEvent]:
            while True:
                yield await queue.get()

        try:
            yield events()
        finally:
            self._subscribers.discard(queue)


class RedisRegistry(LiveRegistry):
    """Shared by every replica pointing at the same Redis and key prefix.

    Keys: `<prefix>call:<call id>` (the LiveCall as JSON, expiring after `ttl_s`
    unless refreshed), `<prefix>live` (a set indexing them; members whose key has
    expired are pruned when listed), channel `<prefix>events`."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        replica: str | None = None,
        ttl_s: float = DEFAULT_TTL_S,
    ) -> None:
        import redis.asyncio as redis

        super().__init__(replica=replica, ttl_s=ttl_s)
        self.prefix = prefix
        self.channel = f"{prefix}events"
        self._index = f"{prefix}live"
        self._redis = redis.from_url(
            url, socket_connect_timeout=OP_TIMEOUT_S, socket_timeout=OP_TIMEOUT_S
        )

    def _key(self, call_id: str) -> str:
        return f"{self.prefix}call:{call_id}"

    async def ping(self) -> None:
        """Raises when Redis cannot be reached (for a clear error at start-up)."""
        await asyncio.wait_for(self._redis.ping(), OP_TIMEOUT_S)

    async def close(self) -> None:
        await super().close()
        await self._redis.aclose()

    async def _put(self, call: LiveCall) -> None:
        ttl_ms = max(1, round(self.ttl_s * 1000))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key(call.call_id), json.dumps(asdict(call)), px=ttl_ms)
            pipe.sadd(self._index, call.call_id)
            await pipe.execute()

    async def _delete(self, call_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(call_id))
            pipe.srem(self._index, call_id)
            await pipe.execute()

    async def _list(self) -> list[LiveCall]:
        ids = [
            m.decode() if isinstance(m, bytes) else m
            for m in await self._redis.srandmember(self._index, MAX_LIVE_LISTED) or []
        ]
        if not ids:
            return []
        values = await self._redis.mget([self._key(i) for i in ids])
        gone = [i for i, v in zip(ids, values, strict=True) if v is None]
        if gone:  # expired: their replica stopped refreshing them (crashed)
            await self._redis.srem(self._index, *gone)
        calls = []
        for value in values:
            if value is None:
                continue
            try:
                calls.append(LiveCall.from_json(value))
            except (ValueError, TypeError):  # written by something else under our prefix
                log.warning("live registry: ignoring a malformed entry under %s", self.prefix)
        return calls

    async def _get(self, call_id: str) -> LiveCall | None:
        raw = await self._redis.get(self._key(call_id))
        return LiveCall.from_json(raw) if raw is not None else None

    async def _publish(self, event: CallEvent) -> None:
        await self._redis.publish(self.channel, event.to_json())

    @contextlib.asynccontextmanager
    async def _events(self) -> AsyncIterator[AsyncIterator[CallEvent]]:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self.channel)

        async def events() -> AsyncIterator[CallEvent]:
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                try:
                    yield CallEvent.from_json(message["data"])
                except (ValueError, KeyError, TypeError):
                    log.warning("live registry: ignoring a malformed event on %s", self.channel)

        try:
            yield events()
        finally:
            with contextlib.suppress(Exception):
                await pubsub.unsubscribe(self.channel)
            await pubsub.aclose()


def live_registry_from_env(
    env: dict[str, str] | None = None, *, replica: str | None = None
) -> LiveRegistry:
    """Redis at $REDIS_URL (key prefix $TRUNKLINE_REDIS_PREFIX), else in-process."""
    env = dict(os.environ if env is None else env)
    url = env.get("REDIS_URL", "").strip()
    if not url:
        return InProcessRegistry(replica=replica)
    prefix = env.get("TRUNKLINE_REDIS_PREFIX", DEFAULT_PREFIX)
    return RedisRegistry(url, prefix=prefix, replica=replica)


class LiveSink:
    """A session RecordSink that also keeps the registry current; wraps the store's sink.

    The session's record object is the one it keeps filling in, so the registry's
    poll sees new transcript lines without a hook in the call path."""

    def __init__(self, inner: Any, registry: LiveRegistry) -> None:
        self.inner = inner
        self.registry = registry

    async def on_call_start(self, record: Any) -> None:
        await self.registry.track(record)
        start: Callable[[Any], Any] | None = getattr(self.inner, "on_call_start", None)
        if start is not None:
            await start(record)

    async def on_call_end(self, record: Any) -> None:
        try:
            await self.inner.on_call_end(record)  # persisted first: then it stops being live
        finally:
            await self.registry.untrack(
                record.call_id, outcome=record.outcome, end_reason=record.end_reason
            )
