"""The prompt compiler: stable prefix first, active instructions by priority, goals, and the
domain knowledge relevant to what the caller just said."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.controlplane.db import ControlPlaneStore
from agent.controlplane.errors import NotFound
from agent.controlplane.models import (
    AgentConfig,
    AgentDomain,
    AgentGoal,
    AgentInstruction,
    AgentTemplate,
    ConversationGoal,
    DomainKnowledge,
)
from agent.prompting import AgentDefinition, Goal, Instruction, PromptCompiler
from agent.prompting.loader import load_agent_definition
from tests.prompting.knowledge import ENTRIES

SUPPORT_TEMPLATE = (
    "You are an experienced technical support specialist for store staff. You are warm, "
    "patient and professional, and you help with one short step at a time."
)


def maya(**changes) -> AgentDefinition:
    base = dict(
        name="Maya",
        template_prompt=SUPPORT_TEMPLATE,
        description="You support receipt printers and tills.",
        instructions=[
            Instruction("do", "Confirm the store number first.", priority=5),
            Instruction("dont", "Promise a technician visit.", priority=9),
            Instruction("do", "Offer to stay on the line.", priority=1, active=False),
            Instruction("do", "Thank the caller at the end.", priority=5),
        ],
        goals=[
            Goal(
                "resolve_issue",
                "Get the printer printing again.",
                success_criteria={"printer_works": True},
                required_data=["store_number", "printer_model"],
                priority=2,
            ),
            Goal("upsell", "Offer the extended warranty.", active=False),
        ],
        knowledge=ENTRIES,
    )
    return AgentDefinition(**{**base, **changes})


def test_stable_prefix_is_identical_across_turns_and_first():
    compiler = PromptCompiler(maya())
    turns = [
        compiler.compile("the light on my printer is blinking red"),
        compiler.compile("the cash drawer won't open"),
        compiler.compile(None),
        compiler.compile("hmm"),
    ]
    prefix = turns[0].stable_prefix
    assert all(t.stable_prefix == prefix for t in turns)
    assert all(t.text.startswith(prefix) for t in turns)
    # The per-turn part differs, and only after the prefix.
    assert turns[0].knowledge != turns[1].knowledge
    assert turns[2].text == prefix and turns[2].knowledge == ""
    assert turns[0].text.startswith(SUPPORT_TEMPLATE)


def test_agents_sharing_a_template_share_the_template_prefix():
    maya_prompt = PromptCompiler(maya()).compile("printer jam").text
    sam = maya(name="Sam", description="You handle payments.", instructions=(), goals=())
    sam_prompt = PromptCompiler(sam).compile("card declined").text
    shared = PromptCompiler(maya()).compile().template_prefix
    assert shared == PromptCompiler(sam).compile().template_prefix
    assert maya_prompt.startswith(shared) and sam_prompt.startswith(shared)
    assert "You are Maya." in maya_prompt and "You are Sam." in sam_prompt
    assert "Maya" not in shared and "Sam" not in shared


def test_active_instructions_in_priority_order_inactive_left_out():
    text = PromptCompiler(maya()).compile().text
    order = [
        "Never: Promise a technician visit.",  # 9
        "Do: Confirm the store number first.",  # 5, created first
        "Do: Thank the caller at the end.",  # 5
    ]
    positions = [text.index(line) for line in order]
    assert positions == sorted(positions)
    assert "stay on the line" not in text


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("Don't promise a visit.", "- Don't promise a visit."),
        ("Do not guess.", "- Do not guess."),
        ("never share prices", "- never share prices"),
        ("Guess.", "- Never: Guess."),
        ("Nobody else's tickets.", "- Never: Nobody else's tickets."),
    ],
)
def test_a_dont_is_not_negated_twice(text, line):
    compiled = PromptCompiler(maya(instructions=[Instruction("dont", text)])).compile().text
    assert line in compiled.splitlines()


def test_active_goals_with_required_data_and_criteria():
    text = PromptCompiler(maya()).compile().text
    assert "resolve_issue: Get the printer printing again." in text
    assert "Collect: store_number, printer_model." in text
    assert "printer_works: True" in text
    assert "warranty" not in text  # inactive goal


def test_sections_ordered_template_agent_instructions_goals_knowledge():
    text = PromptCompiler(maya()).compile("paper jam in the printer").text
    marks = [
        SUPPORT_TEMPLATE,
        "You are Maya.",
        "Instructions, most important first:",
        "Goals of this call",
        "Knowledge that may help",
    ]
    positions = [text.index(m) for m in marks]
    assert positions == sorted(positions)


def test_knowledge_relevant_to_the_turn_is_included():
    compiled = PromptCompiler(maya(), top_k=2).compile("the paper got stuck and tore")
    assert compiled.hits[0].entry.id == 2
    assert len(compiled.hits) <= 2
    assert "(process) A paper jam" in compiled.knowledge
    assert "cash drawer" not in compiled.knowledge


def test_no_match_adds_no_knowledge_section():
    compiled = PromptCompiler(maya()).compile("hello there")
    assert compiled.hits == () and compiled.knowledge == ""


def test_agent_without_instructions_goals_or_knowledge():
    bare = AgentDefinition(name="Bare", template_prompt="")
    text = PromptCompiler(bare).compile("anything").text
    assert text.startswith("This is a phone call") and "You are Bare." in text


def test_bad_top_k_is_refused():
    with pytest.raises(ValueError, match="top_k"):
        PromptCompiler(maya(), top_k=0)


async def test_loads_an_agent_from_the_database(tmp_path: Path):
    async with ControlPlaneStore(f"sqlite:///{tmp_path / 'cp.db'}") as store:
        async with store.session() as s:
            template = AgentTemplate(name="support", base_prompt=SUPPORT_TEMPLATE)
            s.add(template)
            await s.flush()
            agent = AgentConfig(name="Maya", description="Printers.", template_id=template.id)
            other = AgentConfig(name="Other", template_id=template.id)
            s.add_all([agent, other])
            await s.flush()
            s.add_all(
                [
                    AgentInstruction(
                        agent_id=agent.id,
                        instruction_type="do",
                        instruction="Be brief.",
                        priority=1,
                    ),
                    AgentInstruction(
                        agent_id=agent.id,
                        instruction_type="dont",
                        instruction="Guess.",
                        priority=7,
                    ),
                    AgentInstruction(
                        agent_id=agent.id,
                        instruction_type="do",
                        instruction="Sing.",
                        priority=9,
                        active=False,
                    ),
                    AgentInstruction(
                        agent_id=other.id,
                        instruction_type="do",
                        instruction="Other's rule.",
                    ),
                ]
            )
            goal = ConversationGoal(name="fix", description="Fix it.", required_data=["store"])
            jam = DomainKnowledge(
                domain_name="printers", knowledge_type="process", content=ENTRIES[1].content
            )
            drawer = DomainKnowledge(
                domain_name="cash", knowledge_type="process", content=ENTRIES[11].content
            )
            s.add_all([goal, jam, drawer])
            await s.flush()
            s.add_all(
                [
                    AgentGoal(agent_id=agent.id, goal_id=goal.id, priority=3),
                    AgentDomain(agent_id=agent.id, domain_id=jam.id),
                    AgentDomain(agent_id=other.id, domain_id=drawer.id),
                ]
            )
        async with store.session() as s:
            definition = await load_agent_definition(s, agent.id)
            with pytest.raises(NotFound):
                await load_agent_definition(s, 9999)

    compiled = PromptCompiler(definition).compile("my cash drawer is stuck, and a paper jam")
    text = compiled.text
    assert text.startswith(SUPPORT_TEMPLATE)
    assert text.index("Never: Guess.") < text.index("Do: Be brief.")
    assert "Sing." not in text and "Other's rule." not in text
    assert "fix: Fix it. Collect: store." in text
    # Only knowledge assigned to this agent is retrieved.
    assert [h.entry.id for h in compiled.hits] == [jam.id]
