"""llama.cpp engine on the embedded Qwen2.5-Coder-0.5B-Instruct GGUF (real model, CPU).

Timings are printed (run with -s to see them), never asserted: speed lives in benchmarks.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from serving.base import BadInput, ChatDelta, LLMEngine
from serving.llm.llama_cpp_engine import LlamaCppLLM
from serving.llm.tool_calls import validate_tool_call
from tests.serving import model_path

MODEL = "qwen2.5-coder-0.5b-instruct"

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "check_printer",
            "description": "Check the status of the receipt printer on a checkout lane.",
            "parameters": {
                "type": "object",
                "properties": {"lane": {"type": "integer", "description": "checkout lane number"}},
                "required": ["lane"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "open_ticket",
            "description": "Open a support ticket for a problem that cannot be fixed on the call.",
            "parameters": {
                "type": "object",
                "properties": {"summary": {"type": "string"}},
                "required": ["summary"],
            },
        },
    },
]

MAYA = (
    "You are Maya, a friendly support specialist for store receipt printers. "
    "Answer the caller in one or two short spoken sentences."
)

# About 300 tokens of store knowledge: the kind of stable prefix every turn repeats.
STORE_KNOWLEDGE = " ".join(
    [
        "Every checkout lane has a thermal receipt printer connected over USB to the lane PC.",
        "When a printer shows a red light, the paper roll is usually empty or badly loaded.",
        "To load paper, open the cover, drop the roll in with the paper coming from the bottom,",
        "pull a few centimetres out, and close the cover firmly until it clicks.",
        "If the printer still does not print, check that the USB cable is seated at both ends.",
        "The store manager can restart the print spooler from the back office terminal.",
        "Never ask the caller to open the lane PC or to touch the power supply.",
        "Lanes are numbered from one to forty; self-checkout lanes start at thirty.",
        "A paper jam is cleared by opening the cover and gently pulling the paper forward.",
        "If a receipt is faint, the roll may be inserted upside down: thermal paper prints",
        "on one side only. Ask the caller to scratch the paper with a fingernail: the",
        "printable side turns dark. Replacement rolls are kept in the cabinet under lane one.",
        "Tickets are opened only after the basic checks fail, and always name the lane.",
    ]
    * 2
)


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaCppLLM]:
    llm = LlamaCppLLM(model_path(MODEL), n_ctx=4096)
    yield llm
    llm.close()


async def collect(stream: AsyncIterator[ChatDelta]) -> tuple[list[ChatDelta], float, float]:
    """All deltas, seconds to the first one, seconds in total."""
    started = time.perf_counter()
    first = None
    deltas = []
    async for delta in stream:
        first = first if first is not None else time.perf_counter() - started
        deltas.append(delta)
    return deltas, first or 0.0, time.perf_counter() - started


def text_of(deltas: list[ChatDelta]) -> str:
    return "".join(d.text for d in deltas)


def system(content: str) -> dict[str, Any]:
    return {"role": "system", "content": content}


def user(content: str) -> dict[str, Any]:
    return {"role": "user", "content": content}


def named(tool: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": tool}}


def test_engine_follows_the_protocol(engine: LlamaCppLLM) -> None:
    assert isinstance(engine, LLMEngine)


async def test_chat_streams_a_sensible_answer(engine: LlamaCppLLM) -> None:
    deltas, first, total = await collect(
        engine.chat(
            [system("Answer in one short sentence."), user("What is the capital of France?")],
            max_tokens=24,
        )
    )
    text_deltas = [d for d in deltas if d.text]
    assert len(text_deltas) > 1, "the answer should stream token by token"
    assert "paris" in text_of(deltas).lower()
    last = deltas[-1]
    assert last.finish_reason in ("stop", "length") and last.usage is not None
    assert last.usage.prompt_tokens > 10
    assert 1 < last.usage.completion_tokens <= 24
    print(f"\ntext answer: first delta {first:.2f} s, total {total:.2f} s: {text_of(deltas)!r}")


async def test_named_tool_choice_gives_a_schema_valid_call(engine: LlamaCppLLM) -> None:
    deltas, _, total = await collect(
        engine.chat(
            [system(MAYA), user("Hi, this is lane 4. The printer is out of paper.")],
            tools=TOOLS,
            tool_choice=named("check_printer"),
            max_tokens=40,
        )
    )
    calls = [d.tool_call for d in deltas if d.tool_call]
    assert len(calls) == 1
    assert calls[0].name == "check_printer"
    assert json.loads(calls[0].arguments) == {"lane": 4}
    validate_tool_call(calls[0], TOOLS)
    assert text_of(deltas) == "", "a forced call is not spoken"
    assert deltas[-1].finish_reason == "tool_calls"
    print(f"\nnamed tool call in {total:.2f} s: {calls[0]}")


async def test_required_tool_choice_calls_one_of_the_tools(engine: LlamaCppLLM) -> None:
    deltas, _, _ = await collect(
        engine.chat(
            [system(MAYA), user("The printer on lane 12 keeps jamming, please check it.")],
            tools=TOOLS,
            tool_choice="required",
            max_tokens=60,
        )
    )
    calls = [d.tool_call for d in deltas if d.tool_call]
    assert len(calls) == 1 and calls[0].name in ("check_printer", "open_ticket")
    validate_tool_call(calls[0], TOOLS)
    assert deltas[-1].finish_reason == "tool_calls"


async def test_auto_tool_choice_turns_the_models_call_into_a_tool_call(
    engine: LlamaCppLLM,
) -> None:
    deltas, _, _ = await collect(
        engine.chat(
            [system(MAYA), user("Please check the printer on lane 7.")],
            tools=TOOLS,
            tool_choice="auto",
            max_tokens=60,
        )
    )
    calls = [d.tool_call for d in deltas if d.tool_call]
    assert [c.name for c in calls] == ["check_printer"]
    assert json.loads(calls[0].arguments) == {"lane": 7}
    assert "{" not in text_of(deltas) and "<tool_call>" not in text_of(deltas)
    assert deltas[-1].finish_reason == "tool_calls"


async def test_tool_choice_none_answers_in_words(engine: LlamaCppLLM) -> None:
    deltas, _, _ = await collect(
        engine.chat(
            [system(MAYA), user("My receipts come out blank. What should I check first?")],
            tools=TOOLS,
            tool_choice="none",
            max_tokens=40,
        )
    )
    assert not [d for d in deltas if d.tool_call]
    assert "<tool_call>" not in text_of(deltas)
    assert len(text_of(deltas).split()) >= 3


async def test_answers_in_words_from_a_tool_result(engine: LlamaCppLLM) -> None:
    history = [
        system(MAYA),
        user("The printer on lane 4 is not printing."),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "check_printer", "arguments": '{"lane": 4}'},
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "call_1",
            "content": '{"lane": 4, "status": "out of paper"}',
        },
    ]
    deltas, _, _ = await collect(
        engine.chat(history, tools=TOOLS, tool_choice="auto", max_tokens=40)
    )
    assert not [d for d in deltas if d.tool_call]
    assert "paper" in text_of(deltas).lower()


async def test_json_schema_response_format_gives_valid_json(engine: LlamaCppLLM) -> None:
    schema = {
        "type": "object",
        "properties": {
            "intent": {"enum": ["printer_problem", "billing_question", "other"]},
            "lane": {"type": "integer"},
        },
        "required": ["intent", "lane"],
        "additionalProperties": False,
    }
    deltas, _, _ = await collect(
        engine.chat(
            [
                system("Classify the caller's request."),
                user("Lane 4's receipt printer is out of paper again."),
            ],
            response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
            max_tokens=40,
        )
    )
    answer = json.loads(text_of(deltas))
    Draft202012Validator(schema).validate(answer)
    assert answer["lane"] == 4
    assert len([d for d in deltas if d.text]) > 1
    assert deltas[-1].finish_reason == "stop"


async def test_json_object_and_choice_response_formats(engine: LlamaCppLLM) -> None:
    deltas, _, _ = await collect(
        engine.chat(
            [user("Give the lane number and the problem as JSON: lane 9, paper jam.")],
            response_format={"type": "json_object"},
            max_tokens=40,
        )
    )
    assert isinstance(json.loads(text_of(deltas)), dict)
    deltas, _, _ = await collect(
        engine.chat(
            [system("Did the caller agree?"), user("Yeah, sure, go ahead.")],
            response_format={"type": "choice", "choice": ["yes", "no", "unclear"]},
            max_tokens=5,
        )
    )
    assert text_of(deltas) in ("yes", "no", "unclear")


async def test_warm_turns_reuse_the_system_prompt(engine: LlamaCppLLM) -> None:
    # A fresh marker up front, so nothing earlier in the session is a shared prefix.
    agent_a = system(f"[agent {uuid.uuid4().hex[:8]}] {MAYA} {STORE_KNOWLEDGE}")
    agent_b = system(f"[agent {uuid.uuid4().hex[:8]}] {MAYA} {STORE_KNOWLEDGE}")
    first_question = user("My printer shows a red light.")

    cold, cold_ttft, _ = await collect(engine.chat([agent_a, first_question], max_tokens=8))
    assert cold[-1].usage.cached_tokens < 10  # type: ignore[union-attr]

    follow_up = [
        agent_a,
        first_question,
        {"role": "assistant", "content": text_of(cold)},
        user("I loaded a new roll. It still does not print."),
    ]
    warm, warm_ttft, _ = await collect(engine.chat(follow_up, max_tokens=8))

    # Another agent takes over the live cache; agent A's saved state brings it back.
    other, _, _ = await collect(engine.chat([agent_b, first_question], max_tokens=4))
    back, back_ttft, _ = await collect(
        engine.chat([agent_a, user("Lane 3 prints faint receipts.")], max_tokens=8)
    )

    system_tokens = await engine.warm([agent_a])  # already cached: returns its length
    assert system_tokens > 250
    assert warm[-1].usage.cached_tokens >= system_tokens  # type: ignore[union-attr]
    assert other[-1].usage.cached_tokens < 10  # type: ignore[union-attr]
    assert back[-1].usage.cached_tokens >= system_tokens  # type: ignore[union-attr]
    print(
        f"\n{system_tokens}-token system prompt: cold TTFT {cold_ttft:.2f} s, "
        f"next turn {warm_ttft:.2f} s, after another agent {back_ttft:.2f} s"
    )


async def test_warm_preprocesses_a_prefix_before_the_call(engine: LlamaCppLLM) -> None:
    agent = system(f"[agent {uuid.uuid4().hex[:8]}] {MAYA} {STORE_KNOWLEDGE}")
    warmed = await engine.warm([agent], tools=TOOLS)
    deltas, ttft, _ = await collect(
        engine.chat([agent, user("Hello?")], tools=TOOLS, tool_choice="none", max_tokens=4)
    )
    assert deltas[-1].usage.cached_tokens >= warmed  # type: ignore[union-attr]
    print(f"\nafter warm() of {warmed} tokens: first delta {ttft:.2f} s")


async def test_closing_the_stream_stops_generation(engine: LlamaCppLLM) -> None:
    stream = engine.chat(
        [user("Count from 1 to 300, separated by commas.")], max_tokens=300, temperature=0.0
    )
    seen = 0
    async for delta in stream:
        seen += 1 if delta.text else 0
        if seen == 3:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    assert engine.last_usage is not None
    assert engine.last_usage.completion_tokens <= seen + 1
    # The model is free again straight away.
    deltas, _, _ = await collect(engine.chat([user("Say OK.")], max_tokens=3))
    assert deltas[-1].finish_reason in ("stop", "length")


async def test_cancelling_the_consumer_task_stops_generation(engine: LlamaCppLLM) -> None:
    started = asyncio.Event()

    async def consume() -> None:
        async for delta in engine.chat(
            [user("Write a long story about a printer.")], max_tokens=300
        ):
            if delta.text:
                started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), timeout=120)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.last_usage is not None and engine.last_usage.completion_tokens < 300


async def test_a_reader_that_pauses_pauses_the_model(engine: LlamaCppLLM) -> None:
    # The reply pipeline stops reading while TTS voices the first piece, so the model must
    # not keep the cores busy meanwhile: it stays at most MAX_DELTAS_AHEAD deltas ahead.
    stream = engine.chat(
        [user("Count from 1 to 300, separated by commas.")], max_tokens=200, temperature=0.0
    )
    iterator = aiter(stream)
    await anext(iterator)
    await asyncio.sleep(0.5)  # the model would write ~15 tokens in this time
    evaluated = engine._llm.n_tokens
    await asyncio.sleep(0.5)
    assert engine._llm.n_tokens == evaluated, "the model kept generating for a paused reader"
    rest = [delta async for delta in iterator]
    assert engine.last_usage is not None and engine.last_usage.completion_tokens > 20
    assert "".join(d.text for d in rest).count(",") > 10  # then it goes on to the end


async def test_concurrent_requests_each_get_their_own_answer(engine: LlamaCppLLM) -> None:
    brief = system("Answer with just the city name.")
    france, germany = await asyncio.gather(
        collect(engine.chat([brief, user("What is the capital of France?")], max_tokens=6)),
        collect(engine.chat([brief, user("What is the capital of Germany?")], max_tokens=6)),
    )
    assert "paris" in text_of(france[0]).lower()
    assert "berlin" in text_of(germany[0]).lower()


async def test_a_queued_request_closed_before_it_starts_never_runs(engine: LlamaCppLLM) -> None:
    running = engine.chat([user("Write a long story about a printer.")], max_tokens=40)
    await anext(running)  # the model is busy with this one
    queued = engine.chat([user("Count from 1 to 300.")], max_tokens=300)
    waiting = asyncio.create_task(anext(queued))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting  # returns at once: it does not wait for the busy model
    rest, _, _ = await collect(running)
    assert rest[-1].finish_reason in ("stop", "length"), "the running answer was not disturbed"
    await asyncio.sleep(0.5)  # let the queued job reach the model and see it was closed
    assert engine.last_usage is not None and engine.last_usage.completion_tokens == 0


async def test_event_loop_keeps_running_while_the_model_works(engine: LlamaCppLLM) -> None:
    gaps: list[float] = []
    running = True

    async def ticker() -> None:
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    agent = system(f"[agent {uuid.uuid4().hex[:8]}] {STORE_KNOWLEDGE}")  # a cold prefill
    await collect(engine.chat([agent, user("Summarise.")], max_tokens=8))
    running = False
    await tick
    assert len(gaps) > 20
    # Seconds of prefill and decode happened meanwhile; the loop never stalled for long.
    assert max(gaps) < 1.0, f"event loop stalled for {max(gaps):.2f} s"


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"messages": []}, "messages must not be empty"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "unknown role 'wizard'"),
        ({"messages": [{"role": "user"}]}, "has no content"),
        (
            {"messages": [user("hi")], "tools": TOOLS, "tool_choice": named("reboot_store")},
            "not in tools",
        ),
        ({"messages": [user("hi")], "tool_choice": "required"}, "needs at least one tool"),
        (
            {
                "messages": [user("hi")],
                "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": 7}}},
            },
            "not a valid JSON schema",
        ),
        (
            {"messages": [user("hi")], "response_format": {"type": "yaml"}},
            "response_format type",
        ),
        (
            {
                "messages": [user("hi")],
                "tools": TOOLS,
                "tool_choice": "required",
                "response_format": {"type": "json_object"},
            },
            "cannot be combined",
        ),
        ({"messages": [user("hi")], "max_tokens": 0}, "max_tokens"),
        ({"messages": [user("word " * 5000)]}, "context holds 4096"),
    ],
)
async def test_bad_requests_raise_bad_input(
    engine: LlamaCppLLM, kwargs: dict[str, Any], problem: str
) -> None:
    with pytest.raises(BadInput, match=problem):
        await collect(engine.chat(**kwargs))
    # The engine is unharmed.
    deltas, _, _ = await collect(engine.chat([user("Say yes.")], max_tokens=2))
    assert deltas[-1].usage is not None
