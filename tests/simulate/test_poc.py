"""The POC's understanding and answers, against the real simulator over HTTP (no audio):
it does exactly what the agent's words ask, answers from the printer's real state, and
each persona behaves as described."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from agent.storesim.personas import PersonaError, get_persona, persona_names
from agent.storesim.phone import SimWorld
from agent.storesim.poc import PocBrain, recognise
from tests.simulate.conftest import TOKEN

LOAD = (
    "Great. Put the roll in with the letter side facing down, feed the paper through the "
    "top part of the paper door, then close the door. Tell me when it's done."
)
CLEAR_JAM = (
    "The printer on lane 4 is reporting a paper jam. Please open the printer cover, gently "
    "pull out the jammed paper, check that no torn pieces are left inside, then close the "
    "cover. Tell me when it's done."
)


@contextlib.asynccontextmanager
async def _brain(sim, persona: str = "cooperative") -> AsyncIterator[PocBrain]:
    async with httpx.AsyncClient(
        base_url=sim.http_url, headers={"Authorization": f"Bearer {TOKEN}"}, trust_env=False
    ) as http:
        world = SimWorld(http, 1, 1042)
        brain = PocBrain(get_persona(persona), world, "Dana", "FreshMart", lane=4)
        await brain.start()
        yield brain


def _lane(sim, lane: int = 4):
    return sim.state.printer(1, 1042, lane)


def test_every_persona_loads_and_unknown_ones_are_named():
    assert set(persona_names()) == {
        "cooperative",
        "busy",
        "confused",
        "frustrated",
        "refuses-a-machine",
    }
    with pytest.raises(PersonaError, match="cooperative"):
        get_persona("grumpy")


def test_recognises_instructions_in_the_order_said():
    heard = recognise(CLEAR_JAM)
    assert [r.kind for r in heard.actions] == ["open_cover", "clear_jam", "close_cover"]
    assert heard.done_cue and heard.lane == 4
    # as Whisper punctuates it: the removal is a sentence of its own
    split = recognise(
        "Please open the cover again, look carefully for any scraps. Remove them and close "
        "the cover. Tell me when it's done."
    )
    assert [r.kind for r in split.actions] == ["open_cover", "clear_jam", "close_cover"]
    assert recognise("I'm cleaning the print head on lane 4 from here.").requests == ()


async def test_a_question_about_paper_changes_nothing_an_instruction_does(sim):
    async with _brain(sim) as brain:
        asked = await brain.reply(
            "The coupon printer on lane 4 is showing Out of Paper. Do you have a new roll "
            "of coupon paper you can put in?"
        )
        assert asked is not None and asked.text.startswith("Yes")
        assert asked.actions == ()
        assert _lane(sim).paper == "Out"  # asked, not told: nothing done yet

        done = await brain.reply(LOAD)
        assert done is not None and done.actions == ("load_paper", "close_cover")
        assert "put the new roll in" in done.text and "closed the door" in done.text
    assert _lane(sim).paper == "OK" and _lane(sim).cover == "Closed"
    assert sim.state.store(1, 1042).paper_rolls == 5
    others = [sim.state.printer(1, 1042, lane).paper for lane in (1, 2, 3, 5)]
    assert others == ["OK"] * 4


async def test_statements_get_no_answer_and_change_nothing(sim):
    before = sim.state.snapshot()["stores"]
    async with _brain(sim) as brain:
        for said in (
            "I'm cleaning the print head on lane 4 from here; it only takes a few seconds.",
            "Lane 4's printer is ready again.",
            "I'm going to reset it from here; it will go off line for a few seconds.",
        ):
            assert await brain.reply(said) is None
    assert sim.state.snapshot()["stores"] == before


async def test_answers_come_from_the_printers_real_state(sim):
    async with _brain(sim) as brain:
        seen = await brain.reply("What do the lights on the printer show?")
        assert seen is not None and "no paper" in seen.text
        printed = await brain.reply("I've just sent a test coupon to lane 4. Did it print clearly?")
        assert printed is not None and printed.text.startswith("No, nothing came out")
        await brain.reply(LOAD)
        sim.state.store(1, 1042).printers[4].test_print(sim.state.clock())
        printed = await brain.reply("Did it print clearly?")
        assert printed is not None and "printed clearly" in printed.text


@pytest.mark.parametrize("sim", ["no_paper_stock"], indirect=True)
async def test_no_rolls_in_stock_is_told_and_a_load_fails_honestly(sim):
    async with _brain(sim) as brain:
        asked = await brain.reply("Could you check the stockroom? Do you have any rolls at all?")
        assert asked is not None and asked.text.startswith("No, we're completely out")
        tried = await brain.reply(LOAD)
        assert tried is not None and "don't have any paper rolls" in tried.text
    assert _lane(sim).paper == "Out"


@pytest.mark.parametrize("sim", ["paper_jam"], indirect=True)
async def test_refuses_a_machine_will_not_open_the_printer(sim):
    async with _brain(sim, "refuses-a-machine") as brain:
        for _ in range(2):  # asked again, still no
            reply = await brain.reply(CLEAR_JAM)
            assert reply is not None and reply.actions == ()
            assert "open_cover" in reply.refused and "technician" in reply.text
    assert _lane(sim).paper == "Jam" and _lane(sim).cover == "Closed"


@pytest.mark.parametrize("sim", ["paper_jam"], indirect=True)
async def test_busy_puts_the_first_step_off_then_does_it(sim):
    async with _brain(sim, "busy") as brain:
        first = await brain.reply(CLEAR_JAM)
        assert first is not None and "Give me a second" in first.text and first.actions == ()
        assert _lane(sim).paper == "Jam"
        assert await brain.reply("One moment, please.") is None  # still remembers the step
        later = await brain.reply("No rush, take your time. Just tell me when it's done.")
        assert later is not None
        assert later.actions == ("open_cover", "clear_jam", "close_cover")
    assert _lane(sim).paper == "OK" and _lane(sim).cover == "Closed"


@pytest.mark.parametrize("sim", ["paper_jam"], indirect=True)
async def test_confused_asks_once_then_follows_and_frustrated_complains(sim):
    async with _brain(sim, "confused") as brain:
        first = await brain.reply(CLEAR_JAM)
        assert first is not None and first.actions == () and first.text.endswith("?")
        again = await brain.reply("Sorry, let me put that another way. " + CLEAR_JAM)
        assert again is not None and "clear_jam" in again.actions
    assert _lane(sim).paper == "OK"

    async with _brain(sim, "frustrated") as frustrated:
        await frustrated.reply(CLEAR_JAM)
        repeat = await frustrated.reply(CLEAR_JAM)
        assert repeat is not None and "already did that" in repeat.text


@pytest.mark.parametrize("sim", ["pc_unresponsive"], indirect=True)
async def test_restarts_the_pc_only_when_told_how(sim):
    async with _brain(sim) as brain:
        consent = await brain.reply("Could you restart that back-office computer for me?")
        assert consent is not None and consent.actions == ()
        assert sim.state.store(1, 1042).pc_hung
        done = await brain.reply(
            "Thanks. On the back-office computer, choose Start, then Restart. If the screen is "
            "frozen, hold the power button until it turns off. Tell me when it's back at the "
            "login screen."
        )
        assert done is not None and done.actions == ("restart_pc",)
        assert "login screen" in done.text
    store = sim.state.store(1, 1042)
    assert store.pc_answers(sim.state.clock())
    assert all(p.powered for p in store.printers.values())  # the PC's button, not a printer's


async def test_leaves_when_only_asked_whether_still_there(sim):
    async with _brain(sim) as brain:
        replies = [await brain.reply("Are you still there?") for _ in range(3)]
    assert [r.end_call for r in replies] == [False, False, True]


async def test_goodbye_ends_the_call(sim):
    async with _brain(sim) as brain:
        bye = await brain.reply(
            "Perfect, lane 4 is back in business. I'll close the ticket now. Thanks so much!"
        )
    assert bye is not None and bye.end_call
