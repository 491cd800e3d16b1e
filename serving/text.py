"""Sentence splitting for streaming TTS.

TTS starts speaking once the first sentence is complete, so the splitter must find real
sentence ends quickly without cutting at "Dr.", "e.g.", "3.5" or "J. Smith". Long
sentences are cut further at clause punctuation so the first audio is not held back.
`SentenceBuffer` does the same on text that arrives in pieces (LLM token stream).
"""

from __future__ import annotations

import re

from serving.base import BadInput

# Abbreviations that never end a sentence: a name or number always follows them.
_TITLES = frozenset(
    "mr mrs ms dr prof st sr jr mt ft no nos vs fig figs approx dept est rev gen col lt sgt capt"
    " ave blvd rd tel ext op vol ch sec".split()
)
# Abbreviations that may end a sentence: a boundary only if a capital letter follows.
_MAYBE_END = frozenset(
    "etc inc ltd co corp jan feb mar apr jun jul aug sep sept oct nov dec".split()
)
# Multi-dot abbreviations such as e.g. / i.e. / a.m. / U.S. (checked on the whole token).
_DOTTED = re.compile(r"^(?:[A-Za-z]\.){2,}$")

_TERMINATORS = ".!?…"
_CLOSERS = "\"'”’)]}»"
_CLAUSE_PUNCT = ",;:—–"

MAX_TEXT_CHARS = 5000  # one TTS request is one reply, not a book
DEFAULT_MAX_CHARS = 160  # a sentence longer than this is cut at a clause boundary
_MIN_CLAUSE_CHARS = 24  # never cut off a clause shorter than this


def split_sentences(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> list[str]:
    """Split `text` into sentences (long ones into clauses), stripped, none empty."""
    buf = SentenceBuffer(max_chars=max_chars)
    out = buf.push(text)
    out.extend(buf.flush())
    return out


def sentences_to_speak(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> list[str]:
    """Validate TTS input and split it; raises BadInput for empty, unspeakable or huge text."""
    if not isinstance(text, str) or not text.strip():
        raise BadInput("text to speak is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise BadInput(f"text is too long: {len(text)} characters (max {MAX_TEXT_CHARS})")
    sentences = [s for s in split_sentences(text, max_chars) if any(c.isalnum() for c in s)]
    if not sentences:
        raise BadInput("text has nothing to speak (no letters or digits)")
    return sentences


class SentenceBuffer:
    """Accumulates streamed text and hands out each sentence as soon as it is complete.

    A terminator is only judged once the next non-space character has arrived (it decides
    whether "etc." or "p.m." ends the sentence), so a sentence is released at the start of
    the next one, or by `flush()` at the end of the stream.
    """

    def __init__(self, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        if max_chars < 2 * _MIN_CLAUSE_CHARS:
            raise ValueError(f"max_chars must be at least {2 * _MIN_CLAUSE_CHARS}")
        self.max_chars = max_chars
        self._text = ""

    def push(self, piece: str) -> list[str]:
        self._text += piece
        return self._drain(final=False)

    def flush(self) -> list[str]:
        out = self._drain(final=True)
        rest = self._text.strip()
        self._text = ""
        if rest:
            out.extend(_split_long(rest, self.max_chars))
        return out

    def _drain(self, final: bool) -> list[str]:
        out: list[str] = []
        while True:
            end = _first_boundary(self._text, final)
            if end is None:
                break
            sentence, self._text = self._text[:end].strip(), self._text[end:]
            if sentence:
                out.extend(_split_long(sentence, self.max_chars))
        # A run-on sentence still streaming in: release finished clauses early.
        if len(self._text.strip()) > self.max_chars:
            cut = _clause_cut(self._text, self.max_chars)
            if cut is not None:
                out.append(self._text[:cut].strip())
                self._text = self._text[cut:]
        return out


def _first_boundary(text: str, final: bool) -> int | None:
    """Index just past the first sentence end in `text`, or None if none is certain yet."""
    for m in re.finditer(r"\n\s*\n|[" + re.escape(_TERMINATORS) + r"]+", text):
        if m.group().startswith("\n"):
            return m.end()
        end = m.end()
        while end < len(text) and text[end] in _CLOSERS:
            end += 1
        if end == len(text):
            return end if final else None
        if not text[end].isspace():
            continue  # "3.5", "e.g.x", "U.S.-made": inside a token
        nxt = re.match(r"\s*(\S)", text[end:])
        if nxt is None:
            if final:
                return end
            return None  # only whitespace follows so far: wait for the next word
        if m.group() == "." and not _ends_sentence(text[: m.start()], nxt.group(1)):
            continue
        return end
    return None


def _ends_sentence(before: str, next_char: str) -> bool:
    """Decide whether a "." (preceded by `before`) followed by `next_char` ends a sentence."""
    token = before.rsplit(None, 1)[-1] if before.strip() else ""
    token = token.lstrip("\"'“‘([{«")
    word = token.lower()
    if next_char.islower() or next_char in ",;:":
        return False  # "approx. twenty", "the U.S., then"
    if word in _TITLES:
        return False
    if word in _MAYBE_END or _DOTTED.match(token + "."):
        return next_char.isupper()
    if len(token) == 1 and token.isupper():
        return False  # an initial: "J. Smith"
    return True


def _split_long(sentence: str, max_chars: int) -> list[str]:
    parts: list[str] = []
    while len(sentence) > max_chars:
        cut = _clause_cut(sentence, max_chars)
        if cut is None:
            break
        parts.append(sentence[:cut].strip())
        sentence = sentence[cut:].strip()
    if sentence:
        parts.append(sentence)
    return parts


def _clause_cut(text: str, max_chars: int) -> int | None:
    """Index just past the last clause punctuation (or failing that, space) before
    max_chars that leaves both sides at least _MIN_CLAUSE_CHARS long."""
    window = text[:max_chars]
    best = None
    for m in re.finditer(r"[" + re.escape(_CLAUSE_PUNCT) + r"](?=\s)", window):
        if m.end() >= _MIN_CLAUSE_CHARS and len(text) - m.end() >= _MIN_CLAUSE_CHARS:
            best = m.end()
    if best is None:
        space = window.rfind(" ")
        if space >= _MIN_CLAUSE_CHARS and len(text) - space >= _MIN_CLAUSE_CHARS:
            best = space
    return best
