"""Typed options of one call session (turn-taking, timeouts, fallbacks, limits)."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.audio import TurnOptions
from agent.session import prompts
from serving.base import BadInput

# Short words callers say to show they are listening; said while the agent talks,
# they are not a turn (see agent/session/barge_in.py).
DEFAULT_BACKCHANNELS = frozenset(
    "mm mhm mmhm mm-hm mm-hmm hmm uh-huh uh huh um uhm ah oh ok okay k yeah yep yes yup "
    "right sure alright gotcha cool great nice got it i see go on".split()
)


@dataclass(frozen=True)
class FallbackTexts:
    """Lines pre-synthesized at session start so they play without touching a model."""

    holding: str = "One moment, please."
    apology: str = "Sorry about that. One moment, please."
    still_there: str = "Are you still there?"
    not_heard: str = "Sorry, I didn't catch that. Could you say it again?"
    silence_goodbye: str = "I haven't heard anything, so I'll hang up now. Goodbye."
    failure_goodbye: str = (
        "I'm sorry, I'm having technical trouble right now. Please call back in a few "
        "minutes. Goodbye."
    )
    time_limit: str = "We've reached the time limit for this call. Thank you, goodbye."


@dataclass(frozen=True)
class SessionOptions:
    agent_name: str = prompts.AGENT_NAME
    system_prompt: str = prompts.SYSTEM_PROMPT
    greeting: str | None = prompts.GREETING  # None: answer silently
    voice: str | None = None  # TTS voice; None: the engine's default
    fallback: FallbackTexts = field(default_factory=FallbackTexts)
    # min_speech_s 0.3 (the detector's own default is 0.2): measured on espeak speech
    # over mu-law, 0.2 s lets half of all 150 ms voice blips ("ah", a cough) start a
    # turn and so cut the agent off; 0.3 s rejects all of them, at the cost of flushing
    # about 0.35 s after the caller's voice starts instead of 0.25 s. So the agent's
    # audio is paused at the first voiced frame (voice_events) and only dropped once
    # the voice lasts 0.3 s; a blip resumes it where it stopped.
    # pause_s 0.1: the speculative transcription (agent/session/speculative.py) starts
    # 0.1 s after the voice stops, and is mostly done when Smart Turn ends the turn.
    turn: TurnOptions = field(
        default_factory=lambda: TurnOptions(min_speech_s=0.3, pause_s=0.1, voice_events=True)
    )

    # LLM request
    max_tokens: int = 120
    temperature: float = 0.0
    max_history_turns: int = 8  # caller+agent exchanges kept after the system prompt
    max_tool_rounds: int = 3  # LLM -> tools -> LLM rounds within one turn
    # Stop reading the LLM once the first piece to speak is out, until TTS has voiced it:
    # an in-process engine pauses with its reader, so on a small CPU the caller's first
    # audio is not slowed by the model writing the rest (agent/session/reply.py).
    pace_llm_to_first_audio: bool = True

    # Barge-in: utterances of at most this many words, all backchannels, heard while
    # the agent was speaking, do not count as a turn; the agent resumes instead.
    backchannel_max_words: int = 2
    backchannels: frozenset[str] = DEFAULT_BACKCHANNELS

    # Failure handling. Dead air never lasts longer than holding_after_s: after that,
    # with no reply audio yet, the holding line plays while the work goes on.
    holding_after_s: float = 1.5
    stt_timeout_s: float = 10.0
    llm_first_token_timeout_s: float = 10.0
    llm_stall_timeout_s: float = 5.0  # between two streamed deltas
    tts_timeout_s: float = 10.0  # to the first audio chunk of one sentence
    tool_timeout_s: float = 10.0

    # Caller silence and call length
    silence_prompt_s: float = 10.0  # quiet this long after the agent spoke -> prompt
    silence_hangup_s: float = 8.0  # quiet this long after the prompt -> goodbye
    # The caller spoke at least this long and STT made no words of it (mumbled, muffled,
    # a bad line): ask them to say it again, once in a row. 0 turns it off.
    not_heard_min_s: float = 0.8
    max_call_s: float = 1800.0
    goodbye_drain_s: float = 15.0  # longest wait for a goodbye line to play out

    def __post_init__(self) -> None:
        positive = (
            "max_tokens",
            "max_history_turns",
            "holding_after_s",
            "stt_timeout_s",
            "llm_first_token_timeout_s",
            "llm_stall_timeout_s",
            "tts_timeout_s",
            "tool_timeout_s",
            "silence_prompt_s",
            "silence_hangup_s",
            "max_call_s",
            "goodbye_drain_s",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise BadInput(f"SessionOptions.{name} must be > 0, got {getattr(self, name)!r}")
        if self.not_heard_min_s < 0:
            raise BadInput(
                f"SessionOptions.not_heard_min_s must be >= 0, got {self.not_heard_min_s!r}"
            )
        if self.max_tool_rounds < 0 or self.backchannel_max_words < 0:
            raise BadInput("SessionOptions.max_tool_rounds and backchannel_max_words must be >= 0")
        if not self.system_prompt.strip():
            raise BadInput("SessionOptions.system_prompt is empty")
