"""Numbers as callers say them, from STT text: "1042", "ten forty two", "one oh four two",
"one thousand forty two", "lane four"."""

from __future__ import annotations

import re

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
_DIGITS = re.compile(r"\d+")
_WORD = re.compile(r"[a-z]+")


def spoken_number(text: str) -> int | None:
    """The first number in `text` (digits win over words), or None."""
    lowered = text.lower().replace("-", " ")
    digits = _DIGITS.findall(lowered.replace(",", ""))
    if digits:
        return int(digits[0])
    chunks: list[str] = []  # said pieces, concatenated: "ten" "forty two" -> 1042
    total: int | None = None  # "one thousand forty two" style
    started = False
    for word in _WORD.findall(lowered):
        if word in _UNITS or word in _TENS:
            value = _UNITS.get(word, _TENS.get(word, 0))
            if chunks and word in _UNITS and value < 10 and chunks[-1].endswith("0"):
                last = int(chunks[-1])
                if last in _TENS.values():  # "forty" "two" -> 42
                    chunks[-1] = str(last + value)
                    continue
            chunks.append(str(value))
            started = True
        elif word == "hundred" and chunks:
            chunks[-1] = str(int(chunks[-1]) * 100)
        elif word == "thousand" and chunks:
            total = (total or 0) + int("".join(chunks)) * 1000
            chunks = []
        elif word == "and" and started:
            continue
        elif started:
            break  # the number is over
    if total is not None:
        return total + (_sum_hundreds(chunks) if chunks else 0)
    if not chunks:
        return None
    if any(int(c) >= 100 for c in chunks):
        return _sum_hundreds(chunks)
    return int("".join(chunks))


def _sum_hundreds(chunks: list[str]) -> int:
    return sum(int(c) for c in chunks)
