"""Engine behaviour that holds for every workflow: phrasing, the ticket, misuse."""

from __future__ import annotations

import pytest

from agent.tools.api_clients import StoreMasterClient
from agent.tools.store_ssh import StoreSSH
from agent.tools.store_tools import CallContext, StoreTools
from agent.workflows import Outcome, WorkflowError, WorkflowRun
from tests.storesim.simulator import TOKEN
from tests.workflows.harness import (
    DONE,
    LOOK_AT_COUPON,
    ScriptedClassifier,
    Turn,
    commands,
    drive,
)


class ShoutingPhraser:
    """Stands in for the LLM phrasing as Maya: any rewording of the canonical text."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int]] = []

    async def phrase(self, text, *, step, attempt):
        self.seen.append((text, step.id, attempt))
        return text.upper()


async def test_the_phraser_rewords_prompts_and_outcomes_but_not_the_procedure(call):
    phraser = ShoutingPhraser()
    run = call.run("KBA3813", phraser=phraser)
    script = {
        "ask_for_roll": [Turn("Yes, I have a roll right here.")],
        "load_paper": [Turn(DONE, lane_actions=("load_paper",))],
        "ask_quality": [Turn(LOOK_AT_COUPON)],
    }
    outcome, prompts = await drive(run, call.caller(script))
    assert prompts[0].text == prompts[0].canonical.upper()
    assert outcome.text == outcome.canonical.upper()
    assert [step for _, step, _ in phraser.seen] == [
        "ask_for_roll",
        "load_paper",
        "ask_quality",
        "resolved",
    ]
    # the classifier is asked about the canonical question, not the rewording
    assert call.classifier.calls[0][0] == prompts[0].canonical


async def test_a_call_without_a_ticket_still_ends_with_a_summary(sim, library):
    async with (
        StoreSSH(sim.known_hosts_path, connect_timeout_s=1.0) as ssh,
        StoreMasterClient(sim.http_url, TOKEN) as storemaster,
    ):
        tools = StoreTools(CallContext(1, 1042, None), ssh, storemaster).registry()
        run = WorkflowRun(
            library["KBA3813"], tools, ScriptedClassifier(), {"lane": 4}, library=library
        )
        await run.start()
        outcome = await run.on_caller("No, we're out of paper rolls.")
    assert isinstance(outcome, Outcome) and outcome.kind == "callback"
    # the note step had no ticket tool: it took its declared error branch and went on
    assert not outcome.ticket_updated
    assert any("Noted on the ticket" in line and "failed" in line for line in outcome.tried)
    assert outcome.summary.startswith("Store is out of coupon paper rolls")
    assert sim.state.ticket("T1")["status"] == "new"


async def test_update_ticket_false_leaves_the_ticket_to_the_caller_of_the_engine(call):
    run = call.run("print_quality", update_ticket=False)
    await run.start()
    assert call.ticket()["status"] == "new"


async def test_misuse_is_a_clear_error(call, library):
    run = call.run("KBA3813")
    with pytest.raises(WorkflowError, match="call start\\(\\) before on_caller"):
        await run.on_caller("hello")
    await run.start()
    with pytest.raises(WorkflowError, match="already started"):
        await run.start()
    outcome = await run.on_caller("No, we're out of paper rolls.")
    assert outcome.kind == "callback"
    with pytest.raises(WorkflowError, match="already ended"):
        await run.on_caller("hello?")
    with pytest.raises(WorkflowError, match="needs an integer `lane`"):
        WorkflowRun(library["KBA3813"], call.tools, call.classifier, {"lane": "4; reboot"})
    assert commands(call.sim) == ["printer_status 4"]
