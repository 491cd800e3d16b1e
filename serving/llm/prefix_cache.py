"""A small LRU of saved KV states, keyed by the token prefix they hold.

llama.cpp keeps one live KV cache; switching between agents (different system prompts)
would re-process each system prompt every time. Saving the state right after a system
prompt lets a later request restore it in tens of milliseconds instead of seconds.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SavedPrefix:
    tokens: tuple[int, ...]
    state: bytes  # llama.cpp sequence state: the KV cells of exactly `tokens`


class PrefixStateCache:
    """Keeps at most `max_entries` states and `max_bytes` of state data, least recently
    used evicted first."""

    def __init__(self, max_entries: int = 4, max_bytes: int = 256 * 1024 * 1024) -> None:
        if max_entries < 0 or max_bytes < 0:
            raise ValueError("max_entries and max_bytes must be >= 0")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[int, ...], SavedPrefix] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, tokens: Sequence[int]) -> bool:
        return tuple(tokens) in self._entries

    @property
    def nbytes(self) -> int:
        return sum(len(entry.state) for entry in self._entries.values())

    def longest_prefix_of(self, tokens: Sequence[int]) -> SavedPrefix | None:
        """The saved state with the longest key that `tokens` starts with."""
        best: SavedPrefix | None = None
        for key, entry in self._entries.items():
            if len(key) <= len(tokens) and (best is None or len(key) > len(best.tokens)):
                if tuple(tokens[: len(key)]) == key:
                    best = entry
        if best is not None:
            self._entries.move_to_end(best.tokens)
        return best

    def put(self, tokens: Sequence[int], state: bytes) -> None:
        key = tuple(tokens)
        if not key or len(state) > self.max_bytes or self.max_entries == 0:
            return
        self._entries[key] = SavedPrefix(key, state)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries or self.nbytes > self.max_bytes:
            self._entries.popitem(last=False)
