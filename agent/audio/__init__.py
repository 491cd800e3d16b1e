"""The caller's audio inside a call: voice activity (silero) and end of turn (Smart Turn).

    detector = TurnDetector.from_models(sample_rate=8000)
    for event in await detector.feed(frame):  # 20 ms int16 frames from the phone
        ...  # SpeechStarted, SpeechPaused, SpeechResumed, TurnEnded (+ Voice*)

Only numpy, onnxruntime and soxr are needed: no torch, no model hub.
"""

from agent.audio.smart_turn import SmartTurn
from agent.audio.turn import (
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    TurnDetector,
    TurnEnded,
    TurnEndReason,
    TurnEvent,
    TurnOptions,
    VoiceStarted,
    VoiceStopped,
)
from agent.audio.vad import SileroVAD, VADFrame

__all__ = [
    "SileroVAD",
    "SmartTurn",
    "SpeechPaused",
    "SpeechResumed",
    "SpeechStarted",
    "TurnDetector",
    "TurnEndReason",
    "TurnEnded",
    "TurnEvent",
    "TurnOptions",
    "VADFrame",
    "VoiceStarted",
    "VoiceStopped",
]
