"""A per-key sliding-window rate limit (in memory, per process).

    uploads = RateLimit(10, window_s=60)
    wait_s = uploads.take(key_id)     # None: allowed (and counted); else seconds to wait

Per process on purpose: it protects this replica's CPU from one client's burst of
expensive requests (voice cloning), which is what it is for.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping

MAX_KEYS = 10_000  # distinct clients tracked at once; the oldest idle one is forgotten


class RateLimit:
    def __init__(
        self, limit: int, *, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if limit < 0 or window_s <= 0:
            raise ValueError(f"need limit >= 0 and window_s > 0, got {limit}, {window_s}")
        self.limit = limit  # 0: unlimited
        self.window_s = window_s
        self._clock = clock
        self._hits: dict[Hashable, deque[float]] = {}

    def take(self, key: Hashable) -> int | None:
        """Count one request for `key`; None when allowed, else whole seconds until one is."""
        if self.limit == 0:
            return None
        now = self._clock()
        hits = self._hits.pop(key, None) or deque()
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        self._hits[key] = hits  # re-inserted: dict order is least recently used first
        if len(hits) >= self.limit:
            return max(1, math.ceil(hits[0] + self.window_s - now))
        hits.append(now)
        if len(self._hits) > MAX_KEYS:
            del self._hits[next(iter(self._hits))]
        return None


def limit_from_env(name: str, default: int, env: Mapping[str, str] | None = None) -> int:
    """A requests-per-window limit from the environment; 0 turns it off."""
    raw = (os.environ if env is None else env).get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise ValueError(f"${name} must be a whole number >= 0 (0: no limit), got {raw!r}")
    return int(raw)
