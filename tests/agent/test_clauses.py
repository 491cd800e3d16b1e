"""The first piece of a reply goes to TTS early: at a clause end, or before a new phrase."""

from __future__ import annotations

import pytest

from agent.session.clauses import SpeechSplitter


def feed(text: str, step: int = 3) -> list[str]:
    """As the LLM streams it: a few characters at a time."""
    splitter = SpeechSplitter()
    out: list[str] = []
    for i in range(0, len(text), step):
        out.extend(splitter.push(text[i : i + step]))
    return out + splitter.flush()


@pytest.mark.parametrize(
    ("reply", "first"),
    [
        ("To change your paper in your receipt printer, open the cover.", "To change your paper"),
        (
            "You can try unplugging the cable and checking it again.",
            "You can try unplugging the cable",
        ),
        ("Lincoln red light is not used on printer paper.", "Lincoln red light is not used"),
    ],
)
def test_an_unpunctuated_first_clause_is_cut_before_a_new_phrase(reply, first):
    pieces = feed(reply)
    assert pieces[0] == first
    assert " ".join(pieces).split() == reply.split()  # nothing lost, nothing reordered


def test_punctuated_or_short_openings_keep_their_own_cuts():
    assert feed("Sure, I can help with that. Open the cover.")[0] == "Sure, I can help with that."
    assert feed("If it is still not working, restart it.")[0] == "If it is still not working,"
    assert feed("Thanks for calling.") == ["Thanks for calling."]


def test_a_word_still_streaming_is_not_taken_for_a_phrase_opener():
    splitter = SpeechSplitter()
    assert splitter.push("Please check the printer in") == []  # "in" may become "inside"
    assert splitter.push("side cover now") == []
    assert splitter.flush() == ["Please check the printer inside cover now"]
