"""Per-turn latency trace: monotonic timestamps of each stage of one caller turn.

"Turn latency" is end of caller speech -> first agent audio out. `first_packet_out`
is when the transport says the first frame of the reply actually left (RTP packet
or WebSocket frame, `Call.audio_out_started_at`); when a transport cannot say (or
other audio was still playing, so the reply did not start a burst of its own),
`first_audio_written` (the moment the reply audio was handed to `Call.write`)
stands in for it: on a paced transport the packet leaves within one 20 ms frame.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

# Stages in pipeline order; each is a time.monotonic() value or None if not reached.
STAGES = (
    "speech_end",  # end of the caller's speech (from the VAD's stream clock)
    "turn_end",  # end-of-turn decision (VAD silence + Smart Turn)
    "stt_done",
    "llm_first_token",
    "first_sentence",
    "tts_first_audio",
    "first_audio_written",
    "first_packet_out",  # the first frame of the reply on the wire / socket
)


@dataclass
class TurnTrace:
    """Timestamps (time.monotonic()) for one turn; stages not reached stay None."""

    index: int
    speech_end: float | None = None
    turn_end: float | None = None
    stt_done: float | None = None
    llm_first_token: float | None = None
    first_sentence: float | None = None
    tts_first_audio: float | None = None
    first_audio_written: float | None = None
    first_packet_out: float | None = None
    end_of_turn_reason: str = ""
    caller_text: str = ""
    agent_text: str = ""  # what the caller heard of the reply
    holding_played: bool = False
    interrupted: bool = False
    error: str | None = None
    extra: dict[str, float] = field(default_factory=dict)

    def mark(self, stage: str, at: float | None = None) -> None:
        """Record `stage` once (the first time it happens in this turn)."""
        if stage not in STAGES:
            raise ValueError(f"unknown trace stage {stage!r}")
        if getattr(self, stage) is None:
            setattr(self, stage, time.monotonic() if at is None else at)

    def stages_ms(self) -> dict[str, float]:
        """Milliseconds from the end of caller speech to each stage reached."""
        if self.speech_end is None:
            return {}
        out: dict[str, float] = {}
        for stage in STAGES[1:]:
            at = getattr(self, stage)
            if at is not None:
                out[stage] = round((at - self.speech_end) * 1000.0, 1)
        return out

    @property
    def turn_latency_ms(self) -> float | None:
        """End of caller speech -> first reply packet out (or, unknown, audio written)."""
        out = self.first_packet_out
        if out is None:
            out = self.first_audio_written
        if self.speech_end is None or out is None:
            return None
        return round((out - self.speech_end) * 1000.0, 1)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stages_ms"] = self.stages_ms()
        data["turn_latency_ms"] = self.turn_latency_ms
        return data
