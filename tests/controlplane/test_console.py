"""The text test console: the agent's brain (compiled prompt, LLM, history) over HTTP.

Real embedded LLM (llama.cpp, Qwen2.5-Coder-0.5B) and a real control-plane database.
The conversation tests use SQLite only: the console keeps nothing in the database
beyond what the management API's own tests cover on both backends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.controlplane.console import ConsoleSessions
from agent.session.config import SessionOptions
from serving.client import HttpLLM
from serving.llm.llama_cpp_engine import LlamaCppLLM
from tests.controlplane.console_fixtures import LLM_MODEL, ConsoleApi, console_api, free_port
from tests.serving import model_path


@pytest.fixture(scope="module")
def llm() -> Iterator[LlamaCppLLM]:
    engine = LlamaCppLLM(model_path(LLM_MODEL), n_ctx=4096)
    yield engine
    engine.close()


@pytest.fixture
async def api(tmp_path: Path, llm: LlamaCppLLM) -> AsyncIterator[ConsoleApi]:
    async with console_api(f"sqlite:///{tmp_path / 'cp.db'}", llm) as api:
        yield api


async def dental_agent(api: ConsoleApi) -> dict[str, Any]:
    """Seed 004's appointment scheduler, built through the API as a user would."""
    template = await api.create(
        "/templates",
        {
            "name": "Receptionist",
            "base_prompt": "You are a warm, efficient receptionist of Sunny Dental.",
        },
    )
    agent = await api.create(
        "/agents",
        {
            "name": "Sunny Scheduler",
            "description": "You book dental appointments.",
            "template_id": template["id"],
            "custom_settings": {"greeting": "Sunny Dental, this is the booking desk."},
        },
    )
    instruction = await api.create(
        "/instructions",
        {
            "agent_id": agent["id"],
            "instruction_type": "do",
            "instruction": "When the caller asks about prices or costs, say that the front "
            "desk handles pricing.",
            "priority": 10,
        },
    )
    agent["instruction_id"] = instruction["id"]
    domain = await api.create(
        "/domains",
        {
            "domain_name": "dental",
            "knowledge_type": "fact",
            "content": "Sunny Dental is open Monday to Friday from 8 am to 5 pm.",
        },
    )
    response = await api.client.put(
        f"/api/agents/{agent['id']}/domains/{domain['id']}", headers=api.admin
    )
    assert response.status_code == 201, response.text
    return agent


async def say(api: ConsoleApi, agent_id: int, message: str, **extra: Any) -> dict[str, Any]:
    response = await api.client.post(
        f"/api/agents/{agent_id}/console", json={"message": message, **extra}, headers=api.admin
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_conversation_follows_the_agents_instructions_and_knowledge(
    api: ConsoleApi,
) -> None:
    agent = await dental_agent(api)

    first = await say(api, agent["id"], "Hi, how much does a teeth cleaning cost?")
    assert first["greeting"] == "Sunny Dental, this is the booking desk."
    print("\nprice:", first["reply"])
    assert "front desk" in first["reply"].lower()
    assert "$" not in first["reply"]
    session_id = first["session_id"]

    second = await say(api, agent["id"], "OK. On which days are you open?", session_id=session_id)
    print("hours:", second["reply"])
    assert second["session_id"] == session_id and second["turn"] == 2
    assert "friday" in second["reply"].lower()

    third = await say(
        api,
        agent["id"],
        "By the way, my name is Laura Jensen. What is my name?",
        session_id=session_id,
    )
    print("name:", third["reply"])
    assert "laura" in third["reply"].lower()

    shown = await api.client.get(
        f"/api/agents/{agent['id']}/console/{session_id}", headers=api.admin
    )
    assert shown.status_code == 200
    lines = shown.json()["transcript"]
    assert [line["speaker"] for line in lines] == ["agent"] + ["caller", "agent"] * 3


async def test_an_edited_instruction_applies_to_the_next_message(api: ConsoleApi) -> None:
    agent = await dental_agent(api)
    question = "Hi, how much does a teeth cleaning cost?"
    assert "front desk" in (await say(api, agent["id"], question))["reply"].lower()

    response = await api.client.patch(
        f"/api/instructions/{agent['instruction_id']}", json={"active": False}, headers=api.admin
    )
    assert response.status_code == 200, response.text
    without = await say(api, agent["id"], question)
    print("\nwithout the instruction:", without["reply"])
    assert "front desk" not in without["reply"].lower()


async def test_goal_progress_on_demand(api: ConsoleApi) -> None:
    agent = await dental_agent(api)
    goal = await api.create(
        "/goals",
        {
            "name": "schedule_appointment",
            "description": "A booked slot the caller agreed to.",
            "success_criteria": {"has_service": True},
            "required_data": ["service", "day", "time"],
        },
    )
    response = await api.client.put(
        f"/api/agents/{agent['id']}/goals/{goal['id']}", headers=api.admin
    )
    assert response.status_code == 201, response.text

    first = await say(api, agent["id"], "Hello, I would like to book a teeth cleaning.")
    assert first["goals"] == {
        "goals": ["schedule_appointment"],
        "evaluated": False,
        "results": None,
        "error": None,
    }
    second = await say(
        api,
        agent["id"],
        "Next Tuesday at 2 pm would suit me.",
        session_id=first["session_id"],
        evaluate_goals=True,
    )
    progress = second["goals"]
    print("\ngoals:", progress)
    assert progress["evaluated"] is True
    (result,) = progress["results"]
    assert result["name"] == "schedule_appointment" and result["error"] is None
    assert "clean" in result["data"]["service"].lower()
    assert "tuesday" in result["data"]["day"].lower()
    assert "2" in result["data"]["time"]
    assert [c["name"] for c in result["criteria"]] == ["has_service"]

    # On demand, later: the same conversation judged again, no message needed.
    again = await api.client.post(
        f"/api/agents/{agent['id']}/console/{first['session_id']}/goals", headers=api.admin
    )
    assert again.status_code == 200, again.text
    assert again.json()["evaluated"] is True


async def test_sessions_end_on_delete_and_are_bounded(tmp_path: Path, llm: LlamaCppLLM) -> None:
    now = [1000.0]
    sessions = ConsoleSessions(max_sessions=2, idle_ttl_s=60, clock=lambda: now[0])
    async with console_api(f"sqlite:///{tmp_path / 'cp.db'}", llm, sessions=sessions) as api:
        agent = await dental_agent(api)
        one = await say(api, agent["id"], "Hello?")
        two = await say(api, agent["id"], "Hello?")
        full = await api.client.post(
            f"/api/agents/{agent['id']}/console", json={"message": "Hi"}, headers=api.admin
        )
        assert full.status_code == 429
        assert "2 console sessions are open" in full.json()["detail"]

        gone = await api.client.delete(
            f"/api/agents/{agent['id']}/console/{one['session_id']}", headers=api.admin
        )
        assert gone.status_code == 204
        after = await api.client.post(
            f"/api/agents/{agent['id']}/console",
            json={"message": "Hi", "session_id": one["session_id"]},
            headers=api.admin,
        )
        assert after.status_code == 404

        now[0] += 61  # idle past the TTL: the other session is gone too
        idle = await api.client.get(
            f"/api/agents/{agent['id']}/console/{two['session_id']}", headers=api.admin
        )
        assert idle.status_code == 404
        assert "without a message" in idle.json()["detail"]
        assert len(sessions) == 0


async def test_bad_requests_get_clear_errors(api: ConsoleApi) -> None:
    agent = await dental_agent(api)
    url = f"/api/agents/{agent['id']}/console"
    bad_bodies = [
        {},
        {"message": ""},
        {"message": "   "},
        {"message": "x" * 4001},
        {"message": "hi\x00"},
        {"message": "hi", "session_id": "../../etc"},
        {"message": "hi", "temperature": 2},
    ]
    for body in bad_bodies:
        response = await api.client.post(url, json=body, headers=api.admin)
        assert response.status_code == 422, (body, response.text)

    unknown_agent = await api.client.post(
        "/api/agents/999/console", json={"message": "hi"}, headers=api.admin
    )
    assert unknown_agent.status_code == 404
    assert "agent 999 not found" in unknown_agent.json()["detail"]
    unknown_session = await api.client.post(
        url, json={"message": "hi", "session_id": "abcdefgh12345678"}, headers=api.admin
    )
    assert unknown_session.status_code == 404

    assert (await api.client.post(url, json={"message": "hi"})).status_code == 401
    read_only = await api.client.post(url, json={"message": "hi"}, headers=api.reader)
    assert read_only.status_code == 403


async def test_a_session_belongs_to_its_agent(api: ConsoleApi) -> None:
    agent = await dental_agent(api)
    other = await api.create("/agents", {"name": "Other Agent"})
    first = await say(api, agent["id"], "Hello?")
    response = await api.client.post(
        f"/api/agents/{other['id']}/console",
        json={"message": "hi", "session_id": first["session_id"]},
        headers=api.admin,
    )
    assert response.status_code == 404


async def test_a_dead_llm_is_a_503_and_leaves_no_session(tmp_path: Path) -> None:
    # The model server is down: nothing listens on its port.
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{free_port()}") as http:
        dead = HttpLLM(http, "llama.cpp")
        sessions = ConsoleSessions()
        async with console_api(f"sqlite:///{tmp_path / 'cp.db'}", dead, sessions=sessions) as api:
            agent = await api.create("/agents", {"name": "Lonely"})
            response = await api.client.post(
                f"/api/agents/{agent['id']}/console", json={"message": "hi"}, headers=api.admin
            )
            assert response.status_code == 503
            assert "the LLM failed" in response.json()["detail"]
            assert len(sessions) == 0


async def test_before_the_models_are_loaded_the_console_says_so(tmp_path: Path) -> None:
    async with console_api(f"sqlite:///{tmp_path / 'cp.db'}", lambda: None) as api:
        agent = await api.create("/agents", {"name": "Early"})
        response = await api.client.post(
            f"/api/agents/{agent['id']}/console", json={"message": "hi"}, headers=api.admin
        )
    assert response.status_code == 503
    assert "still loading" in response.json()["detail"]


async def test_the_history_is_bounded_as_on_a_call(tmp_path: Path, llm: LlamaCppLLM) -> None:
    options = SessionOptions(max_history_turns=1)  # the settings' bound, as calls get it
    async with console_api(f"sqlite:///{tmp_path / 'cp.db'}", llm, base_options=options) as api:
        agent = await dental_agent(api)
        first = await say(api, agent["id"], "Hello, my name is Laura Jensen.")
        session = {"session_id": first["session_id"]}
        await say(api, agent["id"], "On which days are you open?", **session)
        forgot = await say(api, agent["id"], "What is my name?", **session)
    print("\nbounded:", forgot["reply"])
    assert "laura" not in forgot["reply"].lower()


async def test_a_conversation_too_long_for_the_model_is_refused_clearly(tmp_path: Path) -> None:
    small = LlamaCppLLM(model_path(LLM_MODEL), n_ctx=256)  # a context the prompt outgrows
    try:
        async with console_api(f"sqlite:///{tmp_path / 'cp.db'}", small) as api:
            agent = await dental_agent(api)
            response = await api.client.post(
                f"/api/agents/{agent['id']}/console",
                json={"message": "Tell me about teeth cleaning. " * 20},
                headers=api.admin,
            )
    finally:
        small.close()
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "context holds 256" in detail and "start a new session" in detail
