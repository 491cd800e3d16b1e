"""A bounded jitter buffer: reorders RTP payloads by sequence number and hands
one per playout tick, or None for a frame that is lost or late (the caller
plays silence there)."""

from __future__ import annotations

from dataclasses import dataclass

from telephony.rtp import seq_delta


@dataclass
class JitterStats:
    received: int = 0
    played: int = 0
    lost: int = 0  # playout found no packet for its slot
    late: int = 0  # arrived after its slot was played
    duplicate: int = 0
    overflow: int = 0  # dropped because the buffer was full
    resets: int = 0


class JitterBuffer:
    """Packets keyed by sequence number, played out `depth` frames behind the
    first one seen. Holds at most `capacity` frames; a jump far outside that
    window (new stream, peer restart) resynchronises instead of stalling."""

    def __init__(self, depth: int = 3, capacity: int = 50) -> None:
        if not 1 <= depth <= capacity:
            raise ValueError("jitter buffer needs 1 <= depth <= capacity")
        self.depth = depth
        self.capacity = capacity
        self.stats = JitterStats()
        self._frames: dict[int, bytes] = {}
        self._next: int | None = None  # sequence number of the next slot to play
        self._primed = False

    def __len__(self) -> int:
        return len(self._frames)

    def reset(self) -> None:
        self._frames.clear()
        self._next = None
        self._primed = False
        self.stats.resets += 1

    def push(self, sequence: int, payload: bytes) -> None:
        self.stats.received += 1
        if self._next is None:
            self._next = sequence
        offset = seq_delta(sequence, self._next)
        if offset < 0:
            if offset < -self.capacity:  # far in the past: the peer restarted its stream
                self.reset()
                self._next = sequence
            else:
                self.stats.late += 1
                return
        elif offset >= self.capacity * 2:  # far ahead: resynchronise on it
            self.reset()
            self._next = sequence
        if sequence in self._frames:
            self.stats.duplicate += 1
            return
        if len(self._frames) >= self.capacity:
            self.stats.overflow += 1
            # drop the oldest so the buffer keeps up with real time
            oldest = min(self._frames, key=lambda s: seq_delta(s, self._next or 0))
            del self._frames[oldest]
            self._next = (oldest + 1) & 0xFFFF
        self._frames[sequence] = payload
        if not self._primed and len(self._frames) >= self.depth:
            self._primed = True

    def pop(self) -> bytes | None:
        """The payload for this playout slot, or None (silence)."""
        if not self._primed or self._next is None:
            return None
        payload = self._frames.pop(self._next, None)
        self._next = (self._next + 1) & 0xFFFF
        if payload is None:
            if not self._frames:
                # stream paused (silence suppression, hold): wait to re-prime
                self._primed = False
                self._next = None
                return None
            self.stats.lost += 1
            return None
        self.stats.played += 1
        return payload
