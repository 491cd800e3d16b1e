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


def test_punctuated_openings_keep_their_own_cuts():
    assert feed("If it is still not working, restart it.")[0] == "If it is still not working,"
    assert feed("Thanks for calling.") == ["Thanks for calling."]
    assert feed("No, it, the cover, is fine.")[0] == "No,"  # a short opener goes alone
    assert feed("Lane 4, the printer there, is offline.")[0] == "Lane 4, the printer there,"


@pytest.mark.parametrize("opener", ["Sure,", "I'm sorry,", "Of course,", "Okay:", "Yes —"])
def test_a_short_opener_is_the_first_piece_on_its_own(opener):
    pieces = feed(f"{opener} I can help with that. Open the cover.")
    assert pieces[0] == opener
    assert pieces[1:] == ["I can help with that.", "Open the cover."]


def test_a_word_still_streaming_is_not_taken_for_a_phrase_opener():
    splitter = SpeechSplitter()
    assert splitter.push("Please check the printer in") == []  # "in" may become "inside"
    assert splitter.push("side cover now") == []
    assert splitter.flush() == ["Please check the printer inside cover now"]
