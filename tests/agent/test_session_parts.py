"""The session's small parts, without models: what the caller heard after a barge-in,
backchannels, early first clauses, bounded history, trace arithmetic, options."""

from __future__ import annotations

import pytest

from agent.session.barge_in import SpokenSegment, heard_text, is_backchannel
from agent.session.clauses import SpeechSplitter, speakable
from agent.session.config import DEFAULT_BACKCHANNELS, SessionOptions
from agent.session.history import ConversationHistory
from agent.session.trace import TurnTrace
from serving.base import BadInput


def _segments() -> list[SpokenSegment]:
    return [
        SpokenSegment("Sure, I can help.", 0, 8000, complete=True),
        SpokenSegment("Open the cover and lift the old roll out.", 8000, 24000, complete=True),
    ]


def test_heard_text_keeps_whole_sentences_played():
    assert heard_text(_segments(), 24000) == (
        "Sure, I can help. Open the cover and lift the old roll out.",
        2,
    )


def test_heard_text_cuts_the_sentence_being_played_at_a_word():
    text, index = heard_text(_segments(), 8000 + 8000)  # half of the second sentence
    assert index == 1
    assert text.startswith("Sure, I can help. Open the cover")
    assert "roll out" not in text
    assert not text.endswith(" ")


def test_heard_text_before_any_audio_is_empty():
    assert heard_text(_segments(), 0) == ("", 0)
    assert heard_text([], 1000) == ("", 0)


def test_a_segment_still_being_written_is_not_heard_in_full():
    segments = [SpokenSegment("One two three four.", 0, 4000, complete=False)]
    text, index = heard_text(segments, 4000)
    assert index == 0
    assert text == "One two three four."


@pytest.mark.parametrize("text", ["Mm-hm.", "okay", "Okay, yeah.", "Uh-huh", "Got it."])
def test_backchannels_are_recognised(text):
    assert is_backchannel(text, DEFAULT_BACKCHANNELS, 2)


@pytest.mark.parametrize("text", ["", "Wait, stop.", "No", "okay but the printer is jammed"])
def test_real_interruptions_are_not_backchannels(text):
    assert not is_backchannel(text, DEFAULT_BACKCHANNELS, 2)


def _feed(splitter: SpeechSplitter, text: str, step: int = 3) -> list[str]:
    out: list[str] = []
    for i in range(0, len(text), step):
        out.extend(splitter.push(text[i : i + step]))
    return out + splitter.flush()


def test_first_clause_is_released_before_its_sentence_ends():
    splitter = SpeechSplitter()
    early = splitter.push("So let me walk you through it, step by")
    assert early == ["So let me walk you through it,"]
    rest = splitter.push(" step. First open the cover. Then")
    assert rest == ["step by step.", "First open the cover."]
    assert splitter.flush() == ["Then"]


def test_splitter_keeps_every_word_in_order():
    text = "We can fix that now. Open the printer cover, then lift the roll out! Done?"
    pieces = _feed(SpeechSplitter(), text)
    assert " ".join(pieces).split() == text.split()
    assert pieces[0] == "We can fix that now."  # the sentence ended before a long clause


def test_history_is_bounded_to_whole_exchanges():
    history = ConversationHistory("You are Maya.", max_turns=2)
    history.add_agent_line("Hi, this is Maya.")
    for n in range(3):
        history.add_turn(
            [{"role": "user", "content": f"q{n}"}, {"role": "assistant", "content": f"a{n}"}]
        )
    messages = history.messages([{"role": "user", "content": "q3"}])
    assert messages[0] == {"role": "system", "content": "You are Maya."}
    assert [m["content"] for m in messages[1:]] == ["q1", "a1", "q2", "a2", "q3"]


def test_trace_stages_are_relative_to_the_end_of_speech():
    trace = TurnTrace(index=1)
    trace.mark("speech_end", 10.0)
    trace.mark("turn_end", 10.3)
    trace.mark("stt_done", 10.5)
    trace.mark("first_audio_written", 11.2)
    trace.mark("stt_done", 99.0)  # only the first time counts
    assert trace.stages_ms() == {
        "turn_end": 300.0,
        "stt_done": 500.0,
        "first_audio_written": 1200.0,
    }
    assert trace.turn_latency_ms == 1200.0
    with pytest.raises(ValueError, match="unknown trace stage"):
        trace.mark("lunch")


def test_bad_options_are_refused_with_a_clear_error():
    with pytest.raises(BadInput, match="silence_prompt_s"):
        SessionOptions(silence_prompt_s=0)
    with pytest.raises(BadInput, match="system_prompt"):
        SessionOptions(system_prompt="  ")


def test_markdown_is_not_read_aloud():
    assert speakable("**Check the cover**: open it.") == "Check the cover: open it."
    assert speakable("- Lift the roll out.") == "Lift the roll out."
    assert speakable("2.") == ""
