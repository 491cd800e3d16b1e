"""Numbers as callers say them, from STT text: "1042", "ten forty two", "one oh four two",
"one thousand forty two", "lane four".

Whisper writes a number said in pieces in many ways ("Store 10-42", "10, 42", "1 0 4 2",
"41, 42" for a clipped "ten forty-two"), so a store number is read as every plausible
reading (`number_readings`), and a reading that is no known store can still be matched
to a near one (`closest_number`), which the caller is then asked to confirm.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_UNITS = {
    "zero": 0, "oh": 0, "o": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
    "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17,
    "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}  # fmt: skip
# Words Whisper writes for a digit said alone on a phone line ("for" for "four").
_SOUNDALIKES = {"won": 1, "to": 2, "too": 2, "for": 4, "fore": 4, "ate": 8}
_TENS_TEXT = {str(v) for v in _TENS.values()}
_THOUSANDS = re.compile(r"\b\d{1,3}(?:,\d{3})+\b")  # "1,042" is one number
_TOKEN = re.compile(r"\d+|[a-z]+")
_GLUE = {"and", "hundred", "thousand"}


def spoken_number(text: str, *, loose: bool = False) -> int | None:
    """The first number in `text`, its pieces run together ("10-42" -> 1042), or None.
    `loose`: a number is expected here, so "for" may be the "four" said ("lane for")."""
    readings = number_readings(text, loose=loose)
    return readings[0] if readings else None


def number_readings(text: str, *, loose: bool = False) -> list[int]:
    """Plausible readings of the first number said in `text`, likeliest first: all its
    pieces run together, then (when it was said in pieces) each piece alone."""
    run = _first_run(text, loose)
    if not run:
        return []
    readings = [_read(run)]
    pieces = [t for t in run if t.isdigit()]
    if len(pieces) > 1:  # "41, 42": perhaps two numbers after all
        readings += [int(p) for p in pieces]
    seen: set[int] = set()
    return [r for r in readings if r is not None and not (r in seen or seen.add(r))]


def digit_distance(a: int, b: int) -> int:
    """Edits (digit changed, added or dropped) between two numbers as written."""
    x, y = str(a), str(b)
    row = list(range(len(y) + 1))
    for i, cx in enumerate(x, 1):
        prev, row[0] = row[0], i
        for j, cy in enumerate(y, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (cx != cy))
    return row[-1]


def closest_number(readings: Sequence[int], known: Iterable[int]) -> int | None:
    """The one known number nearest to any reading, if near enough: two edits when
    either has four digits or more, one for three, none for shorter readings (the
    caller confirms it before it is used). None when nothing is near, or two known
    numbers are equally near."""
    candidates = sorted(set(known))
    best: tuple[int, int] | None = None  # (distance, number)
    tied = False
    for reading in readings:
        for number in candidates:
            distance = digit_distance(reading, number)
            allowed = _allowed_edits(reading, number)
            if distance > allowed:
                continue
            if best is None or distance < best[0]:
                best, tied = (distance, number), False
            elif distance == best[0] and number != best[1]:
                tied = True
    return None if best is None or tied else best[1]


def _allowed_edits(a: int, b: int) -> int:
    shorter, longer = sorted((len(str(a)), len(str(b))))
    if shorter < 3:
        return 0  # "42" is not a mangled "1042": too little was heard to say
    return 2 if longer >= 4 else 1


def _first_run(text: str, loose: bool = False) -> list[str]:
    """The first stretch of number tokens (digits, number words, "and"/"hundred"/
    "thousand" inside it); commas and hyphens between pieces do not end it."""
    tokens = _TOKEN.findall(_THOUSANDS.sub(lambda m: m.group().replace(",", ""), text.lower()))
    run: list[str] = []
    for token in tokens:
        if token.isdigit() or token in _UNITS or token in _TENS:
            run.append(token)
        elif token in _SOUNDALIKES and (run or loose):  # "one zero for two", "lane for"
            run.append(str(_SOUNDALIKES[token]))
        elif token in _GLUE and run:
            run.append(token)
        elif run:
            break
    while run and run[-1] in _GLUE:
        run.pop()
    return run


def _read(run: list[str]) -> int | None:
    chunks: list[str] = []  # said pieces, concatenated: "ten" "forty two" -> 1042
    total: int | None = None  # "one thousand forty two" style
    for token in run:
        if token.isdigit():
            chunks.append(token)
        elif token in _UNITS or token in _TENS:
            value = _UNITS.get(token, _TENS.get(token, 0))
            if chunks and token in _UNITS and value < 10 and _is_tens(chunks[-1]):
                chunks[-1] = str(int(chunks[-1]) + value)  # "forty" "two" -> 42
                continue
            chunks.append(str(value))
        elif token == "hundred" and chunks:
            chunks[-1] = str(int(chunks[-1]) * 100)
        elif token == "thousand" and chunks:
            total = (total or 0) + int("".join(chunks)) * 1000
            chunks = []
    if total is not None:
        return total + (_sum_hundreds(chunks) if chunks else 0)
    if not chunks:
        return None
    if "hundred" in run:  # "two hundred and five" -> 205
        return _sum_hundreds(chunks)
    return int("".join(chunks))


def _is_tens(chunk: str) -> bool:
    return chunk in _TENS_TEXT


def _sum_hundreds(chunks: list[str]) -> int:
    return sum(int(c) for c in chunks)
