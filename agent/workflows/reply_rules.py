"""Deterministic reading of a caller's reply, before (and instead of) the LLM.

The 0.5B CPU model labels a question back ("Which part of the printer do you mean?") or a
refusal ("I'm not comfortable touching the machine") as some branch, usually `done`, and
is thrown by small talk in front of the answer ("This printer has been acting up all
week. No, we're out."). These rules only decide what they can read exactly; anything
else goes to the LLM, with the small talk taken off.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from agent.workflows.schema import EXAMPLES_MARK

UNCLEAR, NOT_YET = "unclear", "not_yet"

# Whole sentences that carry no answer: remarks about the call, complaints, hedges.
_CHATTER = re.compile(
    r"""^(?:(?:um+|uh+|oh|ugh|well|okay|ok|so|sorry)\s+)?(?:
      (?:um+|uh+|hmm+|ugh|well|okay\s+so|so)
    | (?:(?:um+|uh+|okay|ok)\s+)?let\s+me\s+(?:look|see|check)
    | is\s+this\s+(?:a\s+)?(?:recording|machine|robot|bot|computer|real\s+person|an?\s+ai)
        (?:\s+or\s+a\s+real\s+person)?
    | am\s+i\s+(?:talking|speaking)\s+to\s+a\s+(?:machine|robot|bot|computer|real\s+person)
    | (?:i'?d|i\s+would)\s+rather\s+(?:talk|speak)\s+to\s+a\s+(?:real\s+)?(?:person|human)
    | (?:this|the|that|our)\s+(?:printer|thing|machine)\s+(?:has|'s)\s+been\s+
        (?:acting\s+up|giving\s+(?:us|me)\s+trouble|a\s+pain|broken)
        (?:\s+all\s+(?:week|day|month|morning))?
    | (?:i'?ve\s+got|i\s+have|there'?s)\s+a\s+line(?:\s+at\s+the\s+register)?
        (?:\s+so\s+make\s+it\s+quick)?
    | (?:so\s+)?make\s+it\s+quick(?:\s+though)?
    | i\s+already\s+did\s+that\s+once(?:\s+you\s+know)?
    | i'?m\s+not\s+really\s+a\s+(?:printer|computer|tech|technical)\s+person(?:\s+though)?
    )$""",
    re.VERBOSE,
)

# Refusing the asked action; a refusal of something else does not count.
_REFUSAL = re.compile(
    r"""\b(?:
      won'?t\s+(?:open|touch|do|put|mess|take|pull|restart|reset|unplug|plug|reach|be\s+touching)
    | not\s+(?:comfortable|going\s+to\s+(?:touch|open|do|mess))
    | (?:i'?m|we'?re|i\s+am|we\s+are)\s+not\s+(?:allowed|supposed)
    | (?:i'?d|i\s+would)\s+rather\s+not
    | not\s+touching
    | (?:don'?t|do\s+not)\s+want\s+to\s+(?:touch|open|break|mess|do|reach|take|restart)
    | refuse
    | send\s+(?:me\s+|us\s+)?(?:a\s+|an\s+)?(?:real\s+)?
        (?:technician|tech|person|human|someone|somebody)
    )\b""",
    re.VERBOSE,
)
# A branch that is the caller declining: "the caller can't or won't restart it now".
_REFUSAL_BRANCH = re.compile(r"\b(?:can'?t|cannot|won'?t|refuses?|declines?|unable)\b")
# Words that make a reply (partly) an answer: with them, the LLM decides.
_ANSWER_WORDS = re.compile(
    r"\b(?:yes|yeah|yep|yup|no|nope|nah|done|okay|ok|(?<!not )sure|fine|alright|found|finished|"
    r"did\s+it|it'?s\s+(?:in|on|off|closed|back|up))\b"
)
# With these a "not comfortable" is not the whole story ("..., but it's done").
_AGREEMENT = re.compile(
    r"\b(?:yes|yeah|yep|yup|done|okay|ok|(?<!not )sure|fine|alright|finished|did\s+it|"
    r"it'?s\s+(?:in|on|closed|back|up))\b"
)
_QUESTION_OPEN = re.compile(
    r"^(?:which|what|where|how|why|who|when|do|does|did|is|are|can|could|should|would|will|"
    r"am|was|were|have|has)\b"
)
# "Sorry, I'm not sure I follow." in front of the question back.
_CONFUSED = re.compile(
    r"^(?:sorry|um+|uh+|huh|hmm+|wait|"
    r"(?:sorry\s+)?i'?m\s+(?:not\s+sure\s+i\s+(?:follow|understand)|confused|lost)|"
    r"(?:sorry\s+)?i\s+(?:don'?t|do\s+not)\s+(?:understand|follow|get\s+it|see\s+it|see\s+that"
    r"|know\s+what\s+that\s+is))$"
)
# Still in the middle of the asked action ("It's rebooting now", "Still pulling it out").
_STILL_DOING = re.compile(
    r"\b(?:i'?m|we'?re|it'?s|still)\s+(?:still\s+)?(?:working\s+on|trying|pulling|loading|"
    r"putting|restarting|rebooting|booting|starting\s+up|updating|finding|waiting)\b"
)
_NEGATION = re.compile(r"\b(?:not|no|never|won'?t|can'?t|doesn'?t|isn'?t|didn'?t)\b|n't\b")
# A bare "done": the whole reply, nothing else said.
_BARE_DONE = frozenset(
    {
        "done",
        "all done",
        "it's done",
        "its done",
        "i'm done",
        "im done",
        "finished",
        "all finished",
        "i did it",
        "okay done",
        "ok done",
        "okay it's done",
        "ok it's done",
        "okay its done",
        "ok its done",
        "yes it's done",
        "yes done",
        "all set",
    }
)


def _normal(text: str) -> str:
    return " ".join(text.lower().replace("’", "'").split())


def sentences(reply: str) -> list[str]:
    """The reply's sentences, lower case, each with its end mark ("?" kept)."""
    text = _normal(reply)
    return [s.strip() for s in re.findall(r"[^.?!]+[.?!]*", text) if s.strip(" .?!,")]


def _bare(sentence: str) -> str:
    """Lower case words only: "Okay, done." -> "okay done"."""
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", _normal(sentence)).split())


def _is_chatter(sentence: str) -> bool:
    return _CHATTER.match(_bare(sentence)) is not None


def answer_part(reply: str) -> str:
    """The reply without its chatter sentences ("" when it is nothing but chatter)."""
    kept = [s for s in re.findall(r"[^.?!]+[.?!]*", reply) if s.strip(" .?!,")]
    return " ".join(s.strip() for s in kept if not _is_chatter(s)).strip()


def is_question_back(reply: str) -> bool:
    """The caller only asks something back (what a part is, how to do it), possibly after
    saying they are lost; no answer words anywhere in it."""
    parts = sentences(reply)
    if not parts or _ANSWER_WORDS.search(_bare(" ".join(parts))):
        return False
    punctuated = "?" in reply
    questions = [
        s.endswith("?") if punctuated else bool(_QUESTION_OPEN.match(_bare(s))) for s in parts
    ]
    # "Where is the door? I don't see it.": questions, and otherwise only confusion.
    return any(questions) and all(
        q or _CONFUSED.match(_bare(s)) for s, q in zip(parts, questions, strict=True)
    )


def is_refusal(reply: str) -> bool:
    """Declines the asked action ("No, I'm not touching it"), and says nothing was done."""
    text = _bare(reply)
    return _REFUSAL.search(text) is not None and _AGREEMENT.search(text) is None


def refusal_branch(branches: Mapping[str, str]) -> str | None:
    """The step's branch for the caller declining, when exactly one branch is that."""
    found = [
        name
        for name, means in branches.items()
        # Only the meaning, not its examples (a "No, I can't see it" example is no refusal).
        if _REFUSAL_BRANCH.search(means.split(EXAMPLES_MARK)[0].lower())
    ]
    return found[0] if len(found) == 1 else None


def is_still_doing(reply: str) -> bool:
    """The caller says they are still at it, and nothing else (no answer, no "not")."""
    text = _bare(reply)
    return (
        _STILL_DOING.search(text) is not None
        and _ANSWER_WORDS.search(text) is None
        and _NEGATION.search(text) is None
    )


def rule_label(reply: str, branches: Mapping[str, str]) -> str | None:
    """The label when the rules can read the reply exactly, else None (ask the LLM)."""
    answer = answer_part(reply)
    if not answer:
        return UNCLEAR  # only small talk: no answer yet
    if is_refusal(answer):
        # Declining is that branch where the step has one; elsewhere nothing was done.
        return refusal_branch(branches) or UNCLEAR
    if is_question_back(answer):
        return UNCLEAR
    if NOT_YET in branches and is_still_doing(answer):
        return NOT_YET  # a wait step: keep waiting
    if "done" in branches and _bare(answer) in _BARE_DONE:
        return "done"
    return None
