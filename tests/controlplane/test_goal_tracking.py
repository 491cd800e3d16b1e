"""Goal tracking after a call: the real embedded LLM judges a real call's transcript, the
record is stored first and keeps the results, the completion webhook goes to a real
receiver on loopback (ports 19250-19499), and a failing webhook loses nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from agent.app.api import agent_app
from agent.app.record_sink import StoreSink
from agent.controlplane import schemas, service
from agent.controlplane.db import ControlPlaneStore
from agent.controlplane.goal_tracking import (
    GoalEvaluator,
    GoalTrackingSink,
    TrackedGoal,
    control_plane_goals,
    transcript_text,
)
from agent.controlplane.webhooks import WebhookSender
from agent.metrics import CallMetrics
from agent.records import CallRecordStore
from agent.session.record import CallRecord, TranscriptEntry
from serving.llm.llama_cpp_engine import LlamaCppLLM
from tests.controlplane.conftest import mint_key
from tests.controlplane.console_fixtures import LLM_MODEL, Receiver, running
from tests.serving import model_path

SECRET = b"whsec-goals-9a7e"

# A booking call as the session records it (the caller's lines as Whisper heard them).
BOOKING = [
    ("agent", "Hello, Zürich Nord practice, this is the appointment desk. How can I help?"),
    ("caller", "Hi, I'd like to book a teeth cleaning please."),
    ("agent", "Of course. What day works for you?"),
    ("caller", "Next Tuesday, the fourteenth of March, would be great."),
    ("agent", "We have nine thirty in the morning or two in the afternoon."),
    ("caller", "Two in the afternoon, please. My name is Laura Jensen."),
    ("agent", "Thank you Laura, you're booked for a cleaning on Tuesday March 14th at 2 pm."),
    ("caller", "That's all. Thanks, bye."),
]
DECLINED = [
    ("agent", "Hello, Zürich Nord practice, this is the appointment desk. How can I help?"),
    ("caller", "Hi, I was thinking about a cleaning, but I don't want to book anything now."),
    ("agent", "No problem. Would you like me to suggest a date?"),
    ("caller", "No thanks, I'll call back another time. Bye."),
]
GOAL = TrackedGoal(
    name="schedule_appointment",
    description="A booked slot the caller agreed to.",
    success_criteria={"has_date": True, "has_time": True},
    required_data=["date", "time", "service", "caller_name"],
)


@pytest.fixture(scope="module")
def llm() -> Iterator[LlamaCppLLM]:
    engine = LlamaCppLLM(model_path(LLM_MODEL), n_ctx=4096)
    yield engine
    engine.close()


def call_record(lines: list[tuple[str, str]], agent_name: str) -> CallRecord:
    record = CallRecord(
        call_id="goal-call-1@127.0.0.1",
        caller="sip:laura@127.0.0.1",
        callee="sip:appointment-scheduler@127.0.0.1:5060",
        direction="inbound",
        started_at=dt.datetime.now(dt.UTC),
        agent_name=agent_name,
    )
    for i, (speaker, text) in enumerate(lines):
        record.transcript.append(TranscriptEntry(speaker, text, 3.0 * i, 3.0 * i + 2.5))  # type: ignore[arg-type]
    return record


def end(record: CallRecord) -> CallRecord:
    record.ended_at = record.started_at + dt.timedelta(seconds=30)
    record.duration_s = 30.0
    record.outcome = "completed"
    record.end_reason = "remote_hangup"
    return record


async def test_required_data_and_criteria_from_a_booking_call(llm: LlamaCppLLM) -> None:
    result = await GoalEvaluator(llm).evaluate(GOAL, transcript_text(BOOKING))
    print("\nbooking:", result)
    assert result["error"] is None
    data = result["data"]
    assert "14" in data["date"] or "march" in data["date"].lower()
    assert "2" in data["time"] or "two" in data["time"].lower()
    assert "clean" in data["service"].lower()
    assert "laura" in data["caller_name"].lower()
    assert result["missing"] == []
    assert [(c["name"], c["met"]) for c in result["criteria"]] == [
        ("has_date", True),
        ("has_time", True),
    ]
    assert result["achieved"] is True


async def test_a_declined_booking_does_not_reach_the_goal(llm: LlamaCppLLM) -> None:
    goal = TrackedGoal(name="booked", success_criteria={"has_date": True})
    result = await GoalEvaluator(llm).evaluate(goal, transcript_text(DECLINED))
    print("\ndeclined:", result)
    assert result["error"] is None
    assert result["criteria"][0]["met"] is False and result["criteria"][0]["reason"]
    assert result["achieved"] is False


class Stack:
    """The agent's record sink stack as `trunkline serve` would build it."""

    def __init__(self, records: CallRecordStore, control_plane: ControlPlaneStore) -> None:
        self.records = records
        self.control_plane = control_plane


@pytest.fixture
async def stack(db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    """Agent definitions and call records in one database, SQLite or PostgreSQL."""
    async with (
        ControlPlaneStore(db_url) as control_plane,
        CallRecordStore(db_url, spool_dir=tmp_path / "spool", retry_interval_s=0) as records,
    ):
        yield Stack(records, control_plane)


async def add_agent(control_plane: ControlPlaneStore, webhook: str) -> str:
    async with control_plane.session() as s:
        agent = await service.create_agent(s, schemas.AgentIn(name="Appointment Scheduler"))
        goal = await service.create_goal(
            s,
            schemas.GoalIn(
                name=GOAL.name,
                description=GOAL.description,
                success_criteria=dict(GOAL.success_criteria),
                required_data=list(GOAL.required_data),
                completion_webhook=webhook,
            ),
        )
        await service.assign_goal(s, agent.id, goal.id, schemas.AgentGoalIn(priority=10))
        return agent.name


async def api_view(stack: Stack, call_id: str) -> dict[str, Any]:
    app = agent_app(
        store=stack.records,
        live_sessions=dict,
        health=lambda: (True, {}),
        control_plane=stack.control_plane,
    )
    key = await mint_key(stack.control_plane, "read")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://agent.test") as client:
        response = await client.get(
            f"/api/calls/{quote(call_id)}", headers={"Authorization": f"Bearer {key}"}
        )
    assert response.status_code == 200, response.text
    return response.json()


def goal_sink(stack: Stack, llm: LlamaCppLLM) -> GoalTrackingSink:
    inner = StoreSink(stack.records, CallMetrics())
    webhooks = WebhookSender(SECRET, backoff_s=0.05, max_backoff_s=0.2)
    return GoalTrackingSink(inner, control_plane_goals(stack.control_plane), llm, webhooks=webhooks)


async def run_call(sink: GoalTrackingSink, record: CallRecord) -> None:
    await sink.on_call_start(record)
    await sink.on_call_end(end(record))


async def test_after_a_call_the_record_keeps_the_goals_and_the_webhook_is_signed(
    stack: Stack, llm: LlamaCppLLM
) -> None:
    async with running(Receiver(SECRET)) as receiver:
        agent_name = await add_agent(stack.control_plane, receiver.url)
        sink = goal_sink(stack, llm)
        record = call_record(BOOKING, agent_name)
        await run_call(sink, record)

        # The call's record is stored as soon as the session hands it over.
        stored = await stack.records.get_call(record.call_id)
        assert stored is not None and stored.outcome == "completed"
        assert len(stored.turns) == len(BOOKING)
        assert "goals" not in stored.metadata  # judged after, not before, the hand-over
        assert await sink.drain(timeout_s=300)

    stored = await stack.records.get_call(record.call_id)
    assert stored is not None and len(stored.turns) == len(BOOKING)
    (result,) = stored.metadata["goals"]
    assert result["name"] == GOAL.name and result["achieved"] is True
    assert result["webhook"]["delivered"] is True and result["webhook"]["attempts"] == 1
    assert stored.metadata["transcript"][1]["text"] == BOOKING[1][1]

    # What a user reads back: GET /api/calls/{id} carries the goals (contract 2).
    shown = await api_view(stack, record.call_id)
    assert shown["goals"] == stored.metadata["goals"]

    (hook,) = receiver.received
    assert hook.verified, hook.why
    body: dict[str, Any] = hook.json
    assert body["event"] == "goal.completed"
    assert body["goal"] == {"id": result["goal_id"], "name": GOAL.name}
    assert "laura" in body["data"]["caller_name"].lower()
    assert body["call"]["call_id"] == record.call_id
    assert body["call"]["agent_name"] == agent_name


async def test_a_failing_webhook_never_loses_the_record(stack: Stack, llm: LlamaCppLLM) -> None:
    async with running(Receiver(SECRET, statuses=[500] * 10)) as receiver:
        agent_name = await add_agent(stack.control_plane, receiver.url)
        sink = goal_sink(stack, llm)
        record = call_record(BOOKING, agent_name)
        await run_call(sink, record)
        assert await sink.drain(timeout_s=300)

    assert len(receiver.received) == 5  # every attempt arrived, signed, and got a 500
    assert all(r.verified for r in receiver.received)
    stored = await stack.records.get_call(record.call_id)
    assert stored is not None
    assert len(stored.turns) == len(BOOKING) and stored.outcome == "completed"
    (result,) = stored.metadata["goals"]
    assert result["achieved"] is True
    webhook = result["webhook"]
    assert webhook["delivered"] is False and webhook["attempts"] == 5
    assert webhook["status_code"] == 500 and webhook["error"] == "HTTP 500"


async def test_an_agent_without_goals_leaves_the_record_as_it_was(
    stack: Stack, llm: LlamaCppLLM
) -> None:
    sink = goal_sink(stack, llm)
    record = call_record(BOOKING, "Maya")  # the default agent: not in the control plane
    await run_call(sink, record)
    assert await sink.drain(timeout_s=60)
    stored = await stack.records.get_call(record.call_id)
    assert stored is not None and "goals" not in stored.metadata
    assert len(stored.turns) == len(BOOKING)


async def test_a_call_where_the_caller_said_nothing_reaches_no_goal(
    stack: Stack, llm: LlamaCppLLM
) -> None:
    async with running(Receiver(SECRET)) as receiver:
        agent_name = await add_agent(stack.control_plane, receiver.url)
        sink = goal_sink(stack, llm)
        record = call_record(BOOKING[:1], agent_name)  # the greeting, then silence
        await run_call(sink, record)
        assert await sink.drain(timeout_s=60)
    assert receiver.received == []
    stored = await stack.records.get_call(record.call_id)
    assert stored is not None
    (result,) = stored.metadata["goals"]
    assert result["achieved"] is False and result["error"] == "the caller said nothing"
    assert result["missing"] == list(GOAL.required_data) and result["webhook"] is None


async def test_any_field_name_a_user_can_give_works(llm: LlamaCppLLM) -> None:
    # Quotes in a property name break llama.cpp's schema-to-grammar converter; the
    # evaluator must not pass them through.
    names = ["caller's name", 'date "DD.MM."', "Zürich branch?"]
    text = transcript_text(
        [
            ("caller", "Hi, this is Laura Jensen from the Zürich branch. Book me for the 14.03."),
            ("agent", "Done, Laura, the 14th of March."),
        ]
    )
    data = await GoalEvaluator(llm).extract(names, text)
    assert list(data) == names
    assert "laura" in (data["caller's name"] or "").lower()
    assert "14" in (data['date "DD.MM."'] or "")
