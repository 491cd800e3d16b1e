"""What the store's point of contact understands and answers: rules over the transcript.

`recognise(text)` finds the requests in what the agent said (physical instructions,
questions, the goodbye); `PocBrain.reply()` does the asked actions on the simulated
printer and answers from its real state, in the persona's manner. Nothing is random:
the same words against the same simulated world always give the same reply, and an
action is only ever done because the agent's words asked for it.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.storesim.personas import Persona

PHYSICAL = (
    "open_cover",
    "clear_jam",
    "load_paper",
    "close_cover",
    "power_on",
    "power_cycle",
    "reseat_cable",
    "restart_pc",
)
QUESTIONS = (
    "identity",
    "have_minute",
    "ask_roll",
    "power_light",
    "what_see",
    "printed",
    "restart_consent",
    "pc_check",
    "still_there",
)

IDLE_CHECKS_BEFORE_LEAVING = 3
_OPENING = ("identity", "have_minute", "still_there")
_NUMBERS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
    "for": 4,  # Whisper's usual spelling of "lane 4" in speech
}  # fmt: skip
_LANE = re.compile(r"\blane\s+(\d{1,2}|" + "|".join(_NUMBERS) + r")\b")
_QUESTION_START = re.compile(
    r"^(do|does|did|is|are|was|were|can|could|would|will|have|has|am|any|who|what|how)\b"
)

# Physical instructions: (action, pattern). A sentence may hold several; they are done in
# the order they were said ("open the cover, pull out the paper, close the cover").
_ACTION_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("open_cover", re.compile(r"\bopen\b[^.?!]{0,30}?\b(cover|door|lid|printer)\b")),
    (
        "clear_jam",
        re.compile(
            r"\b(pull|remove|take|clear|get)\b[^.?!]{0,40}?\b(jam|jammed|scraps?|torn|stuck)\b"
            r"|\b(scraps?|torn pieces)\b[^.?!]{0,30}?\bremove\b"
        ),
    ),
    (
        "load_paper",
        re.compile(r"\b(put|load|insert|place|feed)\b[^.?!]{0,40}?\b(roll|paper)\b"),
    ),
    ("close_cover", re.compile(r"\bclose\b[^.?!]{0,30}?\b(cover|door|lid|it)\b")),
    (
        "power_cycle",
        re.compile(r"\bpower[- ]cycle\b|\bturn (it|the printer) off and (back )?on\b"),
    ),
    (
        "power_on",
        re.compile(
            r"\b(press|push|hit)\b[^.?!]{0,20}?\bpower button\b|\bturn (it|the printer) on\b"
        ),
    ),
    ("reseat_cable", re.compile(r"\b(unplug|plug|reseat|check)\b[^.?!]{0,40}?\bcable\b")),
    (
        "restart_pc",
        re.compile(r"\bchoose start\b|\bthen restart\b|\bclick restart\b|\bselect restart\b"),
    ),
)
_JAM_TALK = re.compile(r"\b(jam|jammed|scraps?|torn pieces|stuck paper)\b")
_REMOVE_THEM = re.compile(r"\b(remove|pull out|take out) (them|it|those)\b|\bpull (them|it) out\b")
_NOUN = re.compile(r"\b(cover|door|lid)\b")
_PC_WORDS = re.compile(r"\b(computer|pc|login screen|log-in screen|back[- ]office)\b")
_ROLL = re.compile(r"\brolls?\b|\bstockroom\b|\bcoupon paper\b")
_RESTART_ASK = re.compile(r"\brestart\b")
_LIGHT = re.compile(r"\blights?\b")
_WHAT_SEE = re.compile(
    r"\bwhat (do|does|can)\b[^.?!]{0,30}?\b(see|show|showing|say|display)\b|\bwhat lights?\b"
)
_PRINTED = re.compile(r"\b(coupon|print|printed|printing|prints)\b")
_LOOK_AT_COUPON = re.compile(r"\blook at the (test )?coupon\b")
_IDENTITY = re.compile(r"\b(is this|(speaking|talking) (with|to)|who am i)\b")
# "One moment, please" is the agent holding the line, not asking for a minute.
_MINUTE = re.compile(r"\b(minute|(?<!one )moment|few minutes|a second|good time|help me)\b")
_STILL_THERE = re.compile(r"\b(still there|still with me|are you there)\b")
_LOGIN = re.compile(r"\blog-?in screen\b")
_DONE_CUE = re.compile(r"\b(tell|let) me (know )?when\b")
_GOODBYE = re.compile(
    r"\b(goodbye|bye)\b|\bthanks?( you)?( so much)? for (your|all your|all the) (help|patience)\b"
    r"|\bthanks for (trying|checking)\b|\bclose the ticket\b|\bcall you back\b"
    r"|\bfollow up with you\b|\bwill follow up\b|\bone of my colleagues\b"
    r"|\bhave a (good|great|nice)"
)


@dataclass(frozen=True)
class Request:
    kind: str  # one of PHYSICAL or QUESTIONS
    position: int  # where in the text it was said (actions run in this order)
    noun: str = ""  # the part named ("door", "cover"), to answer in the same words


@dataclass(frozen=True)
class Heard:
    requests: tuple[Request, ...]
    done_cue: bool  # "tell me when it's done"
    goodbye: bool
    question: bool  # the text ends with a question
    lane: int | None

    @property
    def actions(self) -> list[Request]:
        return [r for r in self.requests if r.kind in PHYSICAL]

    @property
    def answerable(self) -> bool:
        return bool(self.requests) or self.goodbye

    @property
    def complete(self) -> bool:
        """The agent handed the turn over: asked something or said "tell me when"."""
        return self.done_cue or self.question or self.goodbye


def _sentences(text: str) -> list[tuple[int, str]]:
    out, start = [], 0
    for match in re.finditer(r"[^.?!]+[.?!]*", text):
        piece = match.group(0).strip()
        if piece:
            out.append((match.start() + start, piece))
    return out


# Whisper often drops the question mark ("hi this is maya am i speaking with dana").
_QUESTION_WORDS = re.compile(
    r"\b(do you|does it|did it|did you|is this|is that|is it|is the|is there|are you|am i"
    r"|can you|could you|would you|have you|what do|what does|how is|how does)\b"
)


def _is_question(sentence: str) -> bool:
    return (
        sentence.endswith("?")
        or bool(_QUESTION_START.match(sentence))
        or bool(_QUESTION_WORDS.search(sentence))
    )


def recognise(text: str) -> Heard:
    """The requests in the agent's words, in the order said."""
    lowered = " ".join(text.lower().replace("’", "'").split())
    pc_context = bool(_PC_WORDS.search(lowered))
    requests: list[Request] = []
    sentences = _sentences(lowered)
    for offset, sentence in sentences:
        question = _is_question(sentence)
        if (question and _ROLL.search(sentence)) or "check the stockroom" in sentence:
            requests.append(Request("ask_roll", offset))
            continue
        if question and _RESTART_ASK.search(sentence) and pc_context:
            requests.append(Request("restart_consent", offset))
            continue
        found_action = False
        for action, pattern in _ACTION_PATTERNS:
            if pc_context and action in ("power_on", "power_cycle", "open_cover"):
                continue  # "hold the power button" of the PC is not the printer's
            for match in pattern.finditer(sentence):
                noun = _NOUN.search(match.group(0))
                requests.append(Request(action, offset + match.start(), noun[0] if noun else ""))
                found_action = True
        if question:
            if _IDENTITY.search(sentence) and not _PRINTED.search(sentence):
                requests.append(Request("identity", offset))
            if _MINUTE.search(sentence):
                requests.append(Request("have_minute", offset))
            if _WHAT_SEE.search(sentence):
                requests.append(Request("what_see", offset))
            elif _LIGHT.search(sentence):
                requests.append(Request("power_light", offset))
            elif _PRINTED.search(sentence) and not found_action:
                requests.append(Request("printed", offset))
            if _STILL_THERE.search(sentence):
                requests.append(Request("still_there", offset))
        elif _LOOK_AT_COUPON.search(sentence):
            requests.append(Request("printed", offset))
        if _LOGIN.search(sentence) and not found_action and not question:
            requests.append(Request("pc_check", offset))
    # Whisper often splits "look for any scraps, remove them" into two sentences.
    if _JAM_TALK.search(lowered) and all(r.kind != "clear_jam" for r in requests):
        removal = _REMOVE_THEM.search(lowered)
        if removal is not None:
            requests.append(Request("clear_jam", removal.start()))
    requests.sort(key=lambda r: r.position)
    if any(r.kind == "restart_pc" for r in requests):  # the restart itself waits for it
        requests = [r for r in requests if r.kind != "pc_check"]
    unique: list[Request] = []
    for request in requests:  # "put the roll in ... feed the paper" is one load
        if all(r.kind != request.kind for r in unique):
            unique.append(request)
    lanes = _LANE.findall(lowered)
    lane = None
    if lanes:
        word = lanes[-1]
        lane = int(word) if word.isdigit() else _NUMBERS[word]
    return Heard(
        requests=tuple(unique),
        done_cue=bool(_DONE_CUE.search(lowered)),
        goodbye=bool(_GOODBYE.search(lowered)),
        question=bool(sentences) and _is_question(sentences[-1][1]),
        lane=lane,
    )


class StoreWorld(Protocol):
    """The POC's hands and eyes on the simulated store."""

    async def printer(self, lane: int) -> dict[str, Any]: ...

    async def paper_rolls(self) -> int: ...

    async def act(self, lane: int, action: str) -> str | None:
        """Do a physical action; None when done, else why it could not be done."""
        ...

    async def restart_pc(self) -> None: ...

    async def pc_answers(self) -> bool: ...


@dataclass(frozen=True)
class PocReply:
    text: str
    actions: tuple[str, ...] = ()  # physical actions really done this turn
    refused: tuple[str, ...] = ()  # asked for but refused by the persona
    end_call: bool = False


@dataclass
class PocBrain:
    """One call's POC: the persona, the store, and what has happened so far."""

    persona: Persona
    world: StoreWorld
    poc_name: str
    store_name: str
    lane: int
    # Longest wait for a restarted PC to come back: a person says "not yet" rather than
    # stay silent long enough for the agent to think the line dropped.
    pc_wait_s: float = 12.0
    done: list[str] = field(default_factory=list)  # every action done this call
    _spoke: bool = False
    _deferred: tuple[Request, ...] = ()
    _clarified: bool = False
    _deferred_once: bool = False
    _prints_seen: dict[int, int] = field(default_factory=dict)
    _idle_checks: int = 0  # "are you still there?" in a row with nothing else asked

    async def start(self) -> None:
        """Note what the printer has printed before the call (a later "did it print?" is
        about what comes out during the call)."""
        snapshot = await self.world.printer(self.lane)
        self._prints_seen[self.lane] = len(snapshot.get("prints") or [])

    async def reply(self, text: str) -> PocReply | None:
        """The answer to what the agent said; None when it asked nothing (stay quiet)."""
        heard = recognise(text)
        if heard.lane is not None:
            self.lane = heard.lane
        actions = heard.actions
        if actions:
            self._deferred = ()  # a new instruction replaces the one put off
        elif self._deferred and (heard.done_cue or heard.question):
            actions = list(self._deferred)  # "take your time, tell me when it's done"
            self._deferred = ()
        if [r.kind for r in heard.requests] == ["still_there"] and not actions:
            self._idle_checks += 1
            if self._idle_checks >= IDLE_CHECKS_BEFORE_LEAVING:  # nobody is asking anything
                return PocReply("I have to get back to the register. Bye.", end_call=True)
        elif heard.answerable or actions:
            self._idle_checks = 0
        if not heard.answerable and not actions:
            if heard.done_cue and self.done:  # asked again about what is already done
                return PocReply("Yes, it's done.")
            return None
        parts: list[str] = []
        if not self._spoke and self.persona.first_prefix:
            if not any(r.kind == "have_minute" for r in heard.requests):
                parts.append(self.persona.first_prefix)
        self._spoke = True
        # Greetings first, then the asked actions, then what can only be told after them
        # ("tell me when it's back at the login screen").
        for request in heard.requests:
            if request.kind in _OPENING:
                parts.append(await self._answer(request))
        done: tuple[str, ...] = ()
        refused: tuple[str, ...] = ()
        if actions:
            said, done, refused = await self._do(actions)
            parts.append(said)
        for request in heard.requests:
            if request.kind in QUESTIONS and request.kind not in _OPENING:
                answer = await self._answer(request)
                if answer:
                    parts.append(answer)
        if heard.goodbye and not actions:
            parts.append("Okay, thanks. Bye.")
            return PocReply(" ".join(parts), done, refused, end_call=True)
        if not parts:
            return None
        return PocReply(" ".join(parts), done, refused)

    def greeting(self) -> PocReply:
        """For an opening the rules did not catch: people answer a greeting anyway."""
        self._spoke = True
        return PocReply(f"Hello, this is {self.poc_name}. {self.persona.opener}")

    def unclear(self) -> PocReply:
        """For an agent question the rules did not understand."""
        return PocReply("Sorry, what do you need me to do?")

    # ------------------------------------------------------------ questions

    async def _answer(self, request: Request) -> str:
        kind = self._hedged
        if request.kind == "identity":
            return f"Yes, this is {self.poc_name} at {self.store_name}."
        if request.kind == "have_minute":
            return self.persona.opener
        if request.kind == "still_there":
            return "Yes, I'm still here."
        if request.kind == "ask_roll":
            if await self.world.paper_rolls() > 0:
                return kind("Yes, we have a new roll of paper.")
            return kind("No, we're completely out of coupon paper rolls. There are none left.")
        if request.kind == "power_light":
            printer = await self.world.printer(self.lane)
            if printer.get("powered"):
                return kind("Yes. The power light is lit up.")
            return kind("No, the power light is off. The printer looks dead.")
        if request.kind == "what_see":
            return kind(describe(await self.world.printer(self.lane)))
        if request.kind == "printed":
            return kind(await self._print_result())
        if request.kind == "restart_consent":
            if "restart_pc" in self.persona.refuses:
                return self.persona.refusal
            return "Yes, I can restart the computer now."
        if request.kind == "pc_check":
            if await self._wait_pc():
                return "Okay, the computer is back at the login screen."
            return "It's still not back, the screen is black."
        return ""

    def _hedged(self, text: str) -> str:
        return f"{self.persona.hedge} {text}" if self.persona.hedge else text

    async def _print_result(self) -> str:
        printer = await self.world.printer(self.lane)
        prints = printer.get("prints") or []
        seen = self._prints_seen.get(self.lane, 0)
        self._prints_seen[self.lane] = len(prints)
        if len(prints) <= seen:
            return "No, nothing came out of the printer."
        if prints[-1].get("quality") == "clear":
            return "Yes, the test coupon came out and it printed clearly."
        return "It came out, but the print is faded and hard to read."

    async def _wait_pc(self) -> bool:
        deadline = time.monotonic() + self.pc_wait_s
        while time.monotonic() < deadline:  # bounded by pc_wait_s
            if await self.world.pc_answers():
                return True
            await asyncio.sleep(0.5)
        return await self.world.pc_answers()

    # ------------------------------------------------------------ actions

    async def _do(self, requests: list[Request]) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
        kinds = [r.kind for r in requests]
        refused = tuple(k for k in kinds if k in self.persona.refuses)
        if refused:
            return self.persona.refusal, (), refused
        if self.persona.clarify_first_action and not self._clarified:
            self._clarified = True
            return self.persona.clarify_line, (), ()
        if self.persona.defer_first_action and not self._deferred_once:
            self._deferred_once = True
            self._deferred = tuple(requests)
            return self.persona.defer_line, (), ()
        repeated = any(k in self.done for k in kinds)
        said: list[str] = []
        done: list[str] = []
        for request in requests:
            outcome = await self._act(request)
            said.append(outcome)
            done.append(request.kind)
            self.done.append(request.kind)
        text = f"{self.persona.done_prefix} I {_join(said)}."
        if repeated and self.persona.repeat_complaint:
            text += " " + self.persona.repeat_complaint
        return text, tuple(done), ()

    async def _act(self, request: Request) -> str:
        # "cover" comes out of espeak as "camera" to Whisper; "lid" survives the line.
        kind, noun = request.kind, "door" if request.noun == "door" else "lid"
        if kind == "restart_pc":
            await self.world.restart_pc()
            if await self._wait_pc():
                return "restarted the computer and it's back at the login screen"
            return "restarted the computer, but it's not back yet"
        before = await self.world.printer(self.lane)
        problem = await self.world.act(self.lane, kind)
        if problem is not None:
            if kind == "load_paper" and "no paper rolls" in problem:
                return "looked, but we don't have any paper rolls left"
            if kind == "load_paper":
                return "tried, but the paper won't go in, something is stuck in there"
            return f"tried, but couldn't: {problem}"
        after = await self.world.printer(self.lane)
        if kind == "load_paper":
            return "put the new roll in, letter side down"
        if kind == "open_cover":
            return f"opened the {noun}"
        if kind == "close_cover":
            return f"closed the {noun}"
        if kind == "clear_jam":
            if before.get("paper") == "Jam":
                return "pulled out the stuck paper, with no torn pieces left"
            return "looked, but there's no paper stuck in there"
        if kind == "power_on":
            if after.get("powered"):
                return "pressed the power button, and the light is on"
            return "pressed the power button, but nothing happens"
        if kind == "power_cycle":
            return "turned it off and back on"
        if kind == "reseat_cable":
            return "unplugged the cable and plugged it back in firmly at both ends"
        return f"did the {kind.replace('_', ' ')}"


def describe(printer: dict[str, Any]) -> str:
    """What a person standing at the printer sees, from its real state."""
    if not printer.get("powered"):
        return "All the lights on the printer are off."
    if printer.get("cover") == "Open":
        return "The cover is open and the light is blinking orange."
    if printer.get("paper") == "Jam":
        return "There's a red light, and I can see paper stuck in it."
    if printer.get("paper") == "Out":
        return "There's an orange light blinking, and there's no paper in it."
    error = printer.get("last_error")
    if printer.get("status") == "Error" and error:
        return f"There's a red light, and the little screen says {error}."
    if printer.get("status") == "Off Line":
        return "The power light is on, but the ready light is off."
    if printer.get("status") == "Busy":
        return "The light is flashing green, it's doing something."
    return "The light is solid green. It looks normal."


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + ", and " + parts[-1]
