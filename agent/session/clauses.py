"""Streamed LLM text -> speakable pieces, releasing the first clause early.

TTS cannot start before it has text. A reply's first sentence is often long
("Sure, let me walk you through replacing the paper roll, it only takes a
minute."), so its first clause goes to TTS on its own; after that whole sentences
(serving/text.SentenceBuffer) sound more natural.

A first clause without punctuation is cut before a word that starts a new phrase
("To change the paper | in your printer, ..."), once it has `first_phrase_min_words`
words: on this CPU each LLM token is ~30 ms and Piper's time grows with the text, so
a short first piece is what the caller hears first. Speakers pause there too.
"""

from __future__ import annotations

import re

from serving.text import SentenceBuffer

# A first clause: at least `min_words` words, ending in clause punctuation + space.
_CLAUSE_END = re.compile(r"[,;:—–](?=\s)")
# Words that open a phrase (prepositions, conjunctions): a natural place to breathe.
_PHRASE_OPENERS = frozenset(
    "and but or so because if when while until unless since although though whereas "
    "then to in on at by with for from into onto about after before during through "
    "without which that where who whose".split()
)
# Short openers a speaker says on their own ("Sure, ...", "I'm sorry, ..."): released as
# the first piece even below `min_words`, so the caller hears them a few tokens sooner.
_OPENERS = frozenset(
    {
        "yes", "yeah", "no", "sure", "okay", "ok", "alright", "all right", "right", "great",
        "of course", "certainly", "absolutely", "got it", "thanks", "thank you", "hello",
        "hi", "well", "i see", "i'm sorry", "sorry", "oh", "good", "perfect", "understood",
    }
)  # fmt: skip
_WORD_THEN_SPACE = re.compile(r"(\S+)\s+")
_CLAUSE_PUNCT = re.compile(r"[,;:—–]")


class SpeechSplitter:
    def __init__(self, first_clause_min_words: int = 3, first_phrase_min_words: int = 4) -> None:
        self._min_words = first_clause_min_words
        self._phrase_words = first_phrase_min_words
        self._head: str | None = ""  # text before the first release; None after it
        self._buffer = SentenceBuffer()

    def push(self, piece: str) -> list[str]:
        if self._head is None:
            return self._buffer.push(piece)
        self._head += piece
        probe = SentenceBuffer()
        sentences = probe.push(self._head)
        if sentences:
            # Sentences are stripped substrings of the head, so this finds where the
            # released text ends and the rest goes on to the real buffer.
            end = self._head.find(sentences[-1]) + len(sentences[-1])
            rest, self._head = self._head[end:], None
            return sentences + self._buffer.push(rest)
        for match in _CLAUSE_END.finditer(self._head):
            clause = self._head[: match.end()].strip()
            if len(clause.split()) >= self._min_words or _is_opener(clause):
                rest, self._head = self._head[match.end() :], None
                return [clause, *self._buffer.push(rest)]
        cut = self._phrase_cut(self._head)
        if cut is not None:
            phrase, rest = self._head[:cut].strip(), self._head[cut:]
            self._head = None
            return [phrase, *self._buffer.push(rest)]
        return []

    def _phrase_cut(self, head: str) -> int | None:
        """Where to cut `head` before a phrase opener, or None. Only words followed by a
        space are complete (a streamed "in" may yet become "inside")."""
        if _CLAUSE_PUNCT.search(head):
            return None  # a punctuated reply: its clause ends are the better cuts
        words = list(_WORD_THEN_SPACE.finditer(head))
        for count, match in enumerate(words):
            if count >= self._phrase_words and match.group(1).lower() in _PHRASE_OPENERS:
                return match.start()
        return None

    def flush(self) -> list[str]:
        if self._head is not None:
            head, self._head = self._head, None
            self._buffer.push(head)
        return [s for s in self._buffer.flush() if any(c.isalnum() for c in s)]


def _is_opener(clause: str) -> bool:
    return clause.rstrip(",;:—– ").lower().replace("’", "'") in _OPENERS


# Markdown the LLM may emit despite the prompt: said aloud it would be noise.
_MARKUP = re.compile(r"[*_`#]+|^\s*[-•]\s+")
_LIST_NUMBER = re.compile(r"^\(?\d{1,2}[.)]$")


def speakable(piece: str) -> str:
    """`piece` without markdown emphasis, headings and bullets; "" for a bare list number."""
    text = " ".join(_MARKUP.sub("", piece).split())
    return "" if _LIST_NUMBER.match(text) else text
