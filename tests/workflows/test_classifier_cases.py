"""The reply classifier on the replies the workflow x persona evals got wrong.

Fast tests pin the deterministic part (agent/workflows/reply_rules.py and the guard);
the `real model` tests run the production stack, GuardedClassifier(LLMClassifier(the
embedded Qwen2.5-Coder-0.5B)), on a handful of the hard replies. The whole labelled set
(classifier_cases.yaml) is measured by benchmarks/classifier_accuracy.py, not here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import models
from agent.workflows.engine import NOT_YET, NOT_YET_MEANS
from agent.workflows.guard import GuardedClassifier, asks_to_hold
from agent.workflows.llm_classifier import INSTRUCTIONS, LLMClassifier, classification_messages
from agent.workflows.reply_rules import (
    answer_part,
    is_question_back,
    is_refusal,
    refusal_branch,
    rule_label,
)
from agent.workflows.schema import WorkflowError, parse_workflow

CASES = Path(__file__).with_name("classifier_cases.yaml")
WAIT = {"done": "the caller says the door is closed", NOT_YET: NOT_YET_MEANS}
RESTART = {
    "will_restart": "the caller agrees to restart the computer",
    "cannot_now": "the caller can't or won't restart it now",
}
LIGHT = {"light_on": "the power light is on", "light_off": "the power light is off"}


def options(library, workflow: str, step_id: str) -> tuple[str, dict[str, str]]:
    """The question and options as the engine passes them (examples included)."""
    step = library[workflow].step(step_id)
    branches = {b.name: b.described for b in step.branches}
    if step.kind == "wait":
        branches[NOT_YET] = NOT_YET_MEANS
    return (step.text or "").format(lane=4), branches


# ------------------------------------------------------------------ deterministic rules


@pytest.mark.parametrize(
    "reply",
    [
        "Sorry, I'm not sure I follow. Which part of the printer do you mean?",
        "Where is the paper door? I don't see it.",
        "Which door? The one on the front?",
        "which one do you mean",  # a transcript without the question mark
        "Um, I'm not really a computer person. How do I restart it?",
    ],
)
def test_a_question_back_is_unclear_on_any_step(reply):
    assert is_question_back(answer_part(reply))
    assert rule_label(reply, WAIT) == "unclear"
    assert rule_label(reply, LIGHT) == "unclear"


@pytest.mark.parametrize(
    "reply",
    [
        "Yes, I've got a roll. Do you want me to put it in now?",  # answers, then asks
        "Okay, which door?",
        "No, which light do you mean?",
        "It came out, but the print is faded and hard to read.",
    ],
)
def test_a_reply_with_an_answer_in_it_is_left_to_the_model(reply):
    assert rule_label(reply, LIGHT) is None


@pytest.mark.parametrize(
    "reply",
    [
        "I won't open up that printer for a machine. Send a real technician to do it.",
        "I'm not comfortable touching the machine.",
        "I'd rather not touch it. Can you send someone?",
        "Nope, not touching it.",
    ],
)
def test_a_refusal_is_the_refusal_branch_where_there_is_one_else_unclear(reply):
    assert is_refusal(reply)
    assert rule_label(reply, WAIT) == "unclear"
    assert rule_label(reply, RESTART) == "cannot_now"


def test_not_finding_something_is_no_refusal():
    assert not is_refusal("I can't find any rolls, we're out.")
    assert not is_refusal("It's not supposed to beep like that, is it?")
    assert not is_refusal("Okay, done. I didn't want to touch it, but it's closed.")


def test_the_refusal_branch_is_read_from_the_meaning_not_the_examples():
    assert refusal_branch(RESTART) == "cannot_now"
    examples = {"light_on": 'the power light is on (e.g. "Yes")', **LIGHT}
    examples["light_off"] = 'the power light is off (e.g. "No, I can\'t see any light")'
    assert refusal_branch(examples) is None


def test_small_talk_around_the_answer_is_taken_off():
    assert answer_part(
        "Is this a recording? I'd rather talk to a real person. Yes. The power light is lit up."
    ) == ("Yes. The power light is lit up.")
    assert answer_part(
        "This printer has been acting up all week. No, we're completely out of coupon paper."
    ) == ("No, we're completely out of coupon paper.")
    assert answer_part("Um, let me look. Yes, we have a new roll of paper.") == (
        "Yes, we have a new roll of paper."
    )
    # Only small talk: nothing answered yet.
    assert rule_label("Is this a recording? I'd rather talk to a real person.", LIGHT) == "unclear"


def test_still_at_it_is_not_yet_on_a_wait_step_only():
    assert rule_label("It's rebooting now, it says updating.", WAIT) == NOT_YET
    assert rule_label("Still pulling it out, it's really stuck in there.", WAIT) == NOT_YET
    assert rule_label("It's still not back, the screen is black.", WAIT) is None
    assert rule_label("It's rebooting now.", LIGHT) is None


def test_a_bare_done_is_done_and_more_than_that_goes_to_the_model():
    assert rule_label("Okay, done.", WAIT) == "done"
    assert rule_label("All done!", WAIT) == "done"
    assert rule_label("Okay, done. I pressed the power button, but nothing happens.", WAIT) is None
    assert rule_label("Done.", LIGHT) is None  # no done branch on this step


def test_hold_requests_are_recognised():
    assert asks_to_hold("Hang on, let me check the stockroom.")
    assert asks_to_hold("hang on let me go look")
    assert asks_to_hold("still loading")
    assert not asks_to_hold("Hang on, the light is green.")


async def test_a_hold_request_after_small_talk_is_not_yet():
    guard = GuardedClassifier(Recorder())
    reply = "I've got a line, so make it quick. Hang on, I have a customer. Give me a second."
    assert await guard.classify("Done?", reply, WAIT) == NOT_YET


class Recorder:
    def __init__(self) -> None:
        self.replies: list[str] = []

    async def classify(self, question, reply, branches):
        self.replies.append(reply)
        return "light_on"


async def test_the_guard_decides_by_rule_and_passes_the_rest_without_small_talk():
    inner = Recorder()
    guard = GuardedClassifier(inner)
    assert await guard.classify("Lit?", "Which light do you mean?", LIGHT) == "unclear"
    assert inner.replies == []
    prefixed = "This printer has been acting up all week. Yes, it's lit."
    assert await guard.classify("Lit?", prefixed, LIGHT) == "light_on"
    assert inner.replies == ["Yes, it's lit."]
    assert guard.ruled == 1


# ------------------------------------------------------------------ the prompt


def test_every_steps_prompt_starts_with_the_same_instructions(library):
    """The shared start stays in llama.cpp's KV cache from one step to the next."""
    prompts = []
    for name, workflow in library.items():
        for step in workflow.steps.values():
            if step.needs_reply:
                question, branches = options(library, name, step.id)
                prompts.append(classification_messages(question, "Yes.", branches))
    assert len(prompts) >= 15
    assert all(p[0]["content"].startswith(INSTRUCTIONS) for p in prompts)


def test_branch_examples_become_earlier_turns_and_leave_the_label_list(library):
    question, branches = options(library, "KBA3813", "ask_for_roll")
    messages = classification_messages(question, "We have one.", branches)
    assert "e.g." not in messages[0]["content"]
    shots = zip(messages[1:-1:2], messages[2::2], strict=True)
    turns = [(m["content"], n["content"]) for m, n in shots]
    assert ("Yes, there's one under the counter.", "has_roll") in turns
    assert ("No, we don't have any.", "no_roll") in turns
    assert messages[-1] == {"role": "user", "content": "We have one."}


class FakeEngine:
    """Records the constrained choices and answers with the first one."""

    def __init__(self) -> None:
        self.choices: list[list[str]] = []

    async def chat(self, messages, *, response_format, **options):
        self.choices.append(response_format["choice"])
        yield type("Delta", (), {"text": response_format["choice"][0]})()


async def test_a_yes_or_no_reply_cannot_come_back_off_topic():
    engine = FakeEngine()
    classifier = LLMClassifier(engine)
    await classifier.classify("Lit?", "No, nothing came out.", LIGHT)
    await classifier.classify("Lit?", "When is the delivery?", LIGHT)
    assert engine.choices == [
        ["light_on", "light_off", "unclear"],
        ["light_on", "light_off", "unclear", "off_topic"],
    ]


def _workflow_with_examples(examples: list[str]):
    fixed = {"goto": "done", "means": "it is fixed", "examples": examples}
    return parse_workflow(
        {
            "name": "demo",
            "title": "Demo",
            "start": "ask",
            "on_unclear": "done",
            "steps": {
                "ask": {
                    "kind": "ask",
                    "text": "Fixed?",
                    "branches": {"fixed": fixed, "broken": {"goto": "done", "means": "it is not"}},
                },
                "done": {"kind": "resolve", "text": "Bye.", "summary": "Done."},
            },
        }
    )


def test_branch_examples_are_optional_and_plain_text():
    step = _workflow_with_examples(["Yes, it works.", "yep"]).step("ask")
    assert step.branch("fixed").described == 'it is fixed (e.g. "Yes, it works."; "yep")'
    assert step.branch("broken").described == "it is not"
    with pytest.raises(WorkflowError, match="examples"):
        _workflow_with_examples(['She said "yes"'])


def test_the_labelled_set_covers_every_question_of_every_workflow(library):
    cases = yaml.safe_load(CASES.read_text())["cases"]
    covered = {(c["workflow"], c["step"]) for c in cases}
    for name, workflow in library.items():
        for step in workflow.steps.values():
            if step.needs_reply:
                assert (name, step.id) in covered
    for case in cases:
        _, branches = options(library, case["workflow"], case["step"])
        labels = {*branches, "unclear", "off_topic", NOT_YET}
        assert {case["label"], *case.get("accept", ())} <= labels, case
        assert case["split"] in ("dev", "test", "holdout")


# ------------------------------------------------------------------ real model

MODEL = "qwen2.5-coder-0.5b-instruct"


@pytest.fixture(scope="module")
def classifier() -> Iterator[GuardedClassifier]:
    from serving.llm.llama_cpp_engine import LlamaCppLLM

    llm = LlamaCppLLM(models.resolve(MODEL), n_ctx=2048)
    yield GuardedClassifier(LLMClassifier(llm))
    llm.close()


# Replies the evals' phones said (benchmarks/results/evals-cpu.md) that the classifier
# mislabelled before, with the label that keeps the call on the right path.
EVAL_MISSES = [
    ("KBA3813", "load_paper", "Hang on, I have a customer. Give me a second.", {NOT_YET}),
    (
        "paper_jam",
        "clear_jam",
        "Sorry, I'm not sure I follow. Which part of the printer do you mean?",
        {"unclear", "off_topic"},
    ),
    (
        "KBA3813",
        "load_paper",
        "I won't open up that printer for a machine. Send a real technician to do it.",
        {"unclear"},
    ),
    ("paper_jam", "clear_jam", "I'm not comfortable touching the machine.", {"unclear"}),
    (
        "no_paper_stock",
        "confirm_no_stock",
        "This printer has been acting up all week. No, we're completely out of coupon paper "
        "rolls. There are none left.",
        {"none"},
    ),
    (
        "printer_offline",
        "ask_power_light",
        "Is this a recording? I'd rather talk to a real person. Yes. The power light is lit up.",
        {"light_on"},
    ),
    (
        "KBA3813",
        "ask_quality",
        "This printer has been acting up all week. Yes, the test coupon came out and it "
        "printed clearly.",
        {"clear"},
    ),
    ("printer_offline", "ask_power_light", "No, the power light is off.", {"light_off"}),
    ("print_quality", "ask_quality", "No, nothing came out of the printer.", {"bad"}),
    (
        "pc_unresponsive",
        "restart_pc",
        "Okay, done. I restarted the computer, but it's not back yet.",
        {NOT_YET, "unclear"},
    ),
]


@pytest.mark.parametrize(("workflow", "step_id", "reply", "labels"), EVAL_MISSES)
async def test_real_model_labels_the_replies_the_evals_got_wrong(
    classifier, library, workflow, step_id, reply, labels
):
    question, branches = options(library, workflow, step_id)
    assert await classifier.classify(question, reply, branches) in labels
