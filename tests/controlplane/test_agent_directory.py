"""Which agent answers: the dialled name picks a control-plane agent, whose definition
becomes the call's prompt, greeting and voice; edits apply to the next call; a broken
database or an unknown name still gets the call answered (by the default agent).

Real control plane (SQLite and PostgreSQL), the packaged example agents, and the real
espeak-ng TTS for the voice check; choosing needs no other model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.app.agent_directory import AgentDirectory, slugify, uri_user
from agent.controlplane import agentfile
from agent.controlplane.db import ControlPlaneStore
from agent.controlplane.examples import example_names, example_path
from agent.session import SessionOptions
from serving.tts.espeak_engine import EspeakTTS

DEFAULT = SessionOptions()


async def apply_examples(store: ControlPlaneStore, *names: str) -> None:
    async with store.session() as session:
        for name in names:
            for spec in agentfile.parse(example_path(name).read_text(), source=name):
                await agentfile.apply(session, spec)


def directory(store: ControlPlaneStore | None) -> AgentDirectory:
    return AgentDirectory((None, None, EspeakTTS()), DEFAULT, store)


def test_the_dialled_user_part_as_a_slug():
    assert uri_user("sip:appointment-scheduler@127.0.0.1:5060") == "appointment-scheduler"
    assert uri_user("<sip:Sales%20Qualifier@pbx.example;transport=udp>") == "Sales Qualifier"
    assert uri_user("sip:127.0.0.1:5060") == ""
    assert uri_user("not a uri") == ""
    assert slugify("Sales Qualifier") == "sales-qualifier" == slugify("sales_qualifier")
    assert example_names() == ["appointment-scheduler", "maya", "sales-qualifier"]


async def test_a_dialled_agent_gets_its_prompt_greeting_and_voice(db_url: str):
    async with ControlPlaneStore(db_url) as store:
        await apply_examples(store, "appointment-scheduler", "sales-qualifier", "maya")
        agents = directory(store)

        choice = await agents.choose("sip:appointment-scheduler@127.0.0.1:5060")
        options = choice.options
        assert choice.agent_id is not None and options.agent_name == "Appointment Scheduler"
        assert options.greeting.startswith("Hello, Zürich Nord practice")
        prompt = options.system_prompt
        # Stable prefix first: template, persona, instructions by priority, goals; then
        # the domain knowledge.
        order = [
            "You are a warm, efficient receptionist.",
            "You are Appointment Scheduler.",
            "Be friendly and accommodating",
            "Offer multiple time slots",
            "schedule_appointment",
            "Cancellations need at least 24 hours' notice",
            "closed on public holidays",
        ]
        positions = [prompt.index(text) for text in order]
        assert positions == sorted(positions), prompt
        assert "Don't discuss pricing" in prompt
        # Its clone is not loaded in this TTS (espeak): the default voice, and why.
        assert options.voice is None and "receptionist-ava" in (choice.voice_note or "")
        # Timeouts and limits stay the settings'.
        assert options.max_call_s == DEFAULT.max_call_s

        qualifier = (await agents.choose("sip:Sales%20Qualifier@pbx")).options
        assert qualifier.agent_name == "Sales Qualifier"
        assert "Take detailed notes" not in qualifier.system_prompt  # inactive
        maya = (await agents.choose("sip:maya@127.0.0.1")).options
        assert maya.greeting == "Hi, this is Maya from store support. How can I help you today?"


async def test_default_number_unknown_names_and_no_control_plane_get_the_default(db_url: str):
    async with ControlPlaneStore(db_url) as store:
        await apply_examples(store, "sales-qualifier")
        agents = directory(store)
        for uri in ("sip:agent@127.0.0.1:5060", "sip:nobody@127.0.0.1", "sip:127.0.0.1"):
            assert await agents.choose(uri) is agents.default
    assert (await directory(None).choose("sip:sales-qualifier@h")).options == DEFAULT


async def test_an_edit_applies_to_the_next_call_and_a_usable_voice_is_kept(db_url: str):
    async with ControlPlaneStore(db_url) as store:
        await apply_examples(store, "sales-qualifier")
        agents = directory(store)
        before = await agents.choose("sip:sales-qualifier@h")
        assert before.fingerprint == (await agents.choose("sip:sales-qualifier@h")).fingerprint

        spec = agentfile.parse(example_path("sales-qualifier").read_text())[0]
        spec = spec.model_copy(
            update={
                "voice_id": "en-gb",
                "custom_settings": {"greeting": "Welcome to Acme sales."},
                "instructions": [
                    agentfile.InstructionSpec(type="dont", instruction="Don't mention competitors")
                ],
            }
        )
        async with store.session() as session:
            await agentfile.apply(session, spec)
        after = await agents.choose("sip:sales-qualifier@h")
        assert after.fingerprint != before.fingerprint
        assert after.options.greeting == "Welcome to Acme sales."
        assert "Don't mention competitors" in after.options.system_prompt
        assert "Ask open-ended questions" not in after.options.system_prompt
        assert after.options.voice == "en-gb" and after.voice_note is None


class Outage:
    """A control plane that can go away: its sessions then come from a PostgreSQL
    address where nothing listens (a real connection failure)."""

    def __init__(self, store: ControlPlaneStore) -> None:
        self.up = store
        self.down = ControlPlaneStore("postgresql://postgres@127.0.0.1:1/trunkline")
        self.current = store

    def session(self) -> Any:
        return self.current.session()


async def test_a_database_outage_still_answers_with_the_last_known_agent(tmp_path: Path):
    async with ControlPlaneStore(f"sqlite:///{tmp_path / 'cp.db'}") as store:
        await apply_examples(store, "sales-qualifier")
        control_plane = Outage(store)
        agents = directory(control_plane)  # type: ignore[arg-type]
        known = await agents.choose("sip:sales-qualifier@h")
        assert known.agent_id is not None
        control_plane.current = control_plane.down
        try:
            assert await agents.choose("sip:sales-qualifier@h") == known
            assert await agents.choose("sip:appointment-scheduler@h") is agents.default
        finally:
            await control_plane.down.close()


@pytest.mark.parametrize("user", ["agent", ""])
async def test_default_users_never_touch_the_database(user: str, tmp_path: Path):
    broken = ControlPlaneStore(f"sqlite:///{tmp_path / 'missing-dir' / 'cp.db'}")
    agents = directory(broken)
    assert await agents.choose(f"sip:{user}@127.0.0.1" if user else "sip:127.0.0.1") is (
        agents.default
    )


def test_knowledge_beyond_the_prompt_bound_is_left_out_and_said_so(caplog):
    from agent.app.agent_directory import MAX_KNOWLEDGE_ENTRIES, system_prompt
    from agent.prompting.compiler import AgentDefinition
    from agent.prompting.retrieval import KnowledgeEntry

    entries = [KnowledgeEntry(i, "shop", "fact", f"Fact number {i}.") for i in range(40)]
    prompt = system_prompt(AgentDefinition(name="Big", template_prompt="T", knowledge=entries))
    assert prompt.count("Fact number") == MAX_KNOWLEDGE_ENTRIES
    assert prompt.index("You are Big.") < prompt.index("Fact number 0.")
    assert f"{MAX_KNOWLEDGE_ENTRIES} of 40 knowledge entries" in caplog.text
