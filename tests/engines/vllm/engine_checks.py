"""VLLMEngine on the real vLLM CPU build, with a random-weight tiny Qwen2.

Runs only with the vLLM env's python (the main suite's tests/serving/test_vllm.py does
that); the file name keeps the main suite from collecting it:

    PYTHONPATH=. TRUNKLINE_QWEN_GGUF=... ~/.cache/trunkline/envs/vllm/bin/python \
        -m pytest tests/engines/vllm/engine_checks.py -q

Random weights say nothing useful, so the checks are about the machinery a voice agent
relies on: streaming, usage, prefix caching, batching, guided output, tool calls forced by
a grammar, cancellation and input errors. Free-form JSON-schema output loops on
whitespace with random weights; the engine's compact JSON grammar removes that freedom, so
schemas with enums (and regex/choice guidance) give deterministic, checkable answers.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from jsonschema.validators import validator_for

from serving.base import BadInput, ChatDelta, Usage
from serving.llm.vllm_engine import VLLMEngine
from tests.engines.vllm.build_tiny_qwen2 import build_tiny_qwen2, locate_qwen_gguf

pytestmark = pytest.mark.asyncio(loop_scope="module")

RESTART_PRINTER = {
    "type": "function",
    "function": {
        "name": "restart_printer",
        "description": "Power-cycle one of the store's receipt printers.",
        "parameters": {
            "type": "object",
            "properties": {"printer": {"type": "string", "enum": ["front", "back"]}},
            "required": ["printer"],
            "additionalProperties": False,
        },
    },
}
OPEN_TICKET = {
    "type": "function",
    "function": {
        "name": "open_ticket",
        "description": "Open a support ticket.",
        "parameters": {
            "type": "object",
            "properties": {
                "severity": {"type": "string", "enum": ["low", "high"]},
                "onsite": {"type": "boolean"},
            },
            "required": ["severity", "onsite"],
            "additionalProperties": False,
        },
    },
}
TOOLS = [RESTART_PRINTER, OPEN_TICKET]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen2(locate_qwen_gguf(), tmp_path_factory.mktemp("tiny-qwen2"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine(tiny_model: Path) -> AsyncIterator[VLLMEngine]:
    engine = VLLMEngine(tiny_model, max_model_len=2048, cpu_kv_cache_gib=1, max_num_seqs=8)
    started = time.perf_counter()
    await engine.start()
    print(f"\nvLLM engine start: {time.perf_counter() - started:.1f} s")
    yield engine
    engine.shutdown()


async def collect(engine: VLLMEngine, messages: list[dict], **kwargs) -> list[ChatDelta]:
    return [delta async for delta in engine.chat(messages, **kwargs)]


def final_usage(deltas: list[ChatDelta]) -> Usage:
    assert deltas[-1].finish_reason is not None, "the stream must end with a finish reason"
    assert deltas[-1].usage is not None, "the last delta must carry usage"
    return deltas[-1].usage


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


async def test_streams_text_deltas_and_usage(engine: VLLMEngine) -> None:
    started = time.perf_counter()
    deltas = await collect(engine, user("The printer is offline."), max_tokens=12)
    print(f"12-token request: {time.perf_counter() - started:.2f} s")
    usage = final_usage(deltas)
    texts = [d.text for d in deltas if d.text]
    assert len(texts) >= 2, "text must arrive as several streamed pieces"
    assert 0 < usage.completion_tokens <= 12
    assert usage.prompt_tokens > 10  # the chat template wraps the user's words
    assert deltas[-1].finish_reason in ("stop", "length")
    assert all(d.tool_call is None for d in deltas)


async def test_repeated_long_prefix_hits_the_prefix_cache(engine: VLLMEngine) -> None:
    # A unique system prompt, so nothing earlier in the module warmed it.
    system = f"Session {uuid.uuid4()}. You are Maya, a receipt-printer support agent. " * 40
    first = final_usage(
        await collect(engine, [{"role": "system", "content": system}, *user("hello")], max_tokens=4)
    )
    second = final_usage(
        await collect(
            engine,
            [{"role": "system", "content": system}, *user("the printer beeps")],
            max_tokens=4,
        )
    )
    print(f"prefix cache: prompt {second.prompt_tokens}, cached {second.cached_tokens}")
    assert first.prompt_tokens > 500
    assert first.cached_tokens == 0
    # The whole system prompt, up to vLLM's block granularity, comes from the cache.
    assert second.cached_tokens > 0.7 * first.prompt_tokens


async def test_concurrent_requests_all_complete(engine: VLLMEngine) -> None:
    started = time.perf_counter()
    results = await asyncio.wait_for(
        asyncio.gather(
            *(
                collect(engine, user(f"Question {i}: is register {i} up?"), max_tokens=8)
                for i in range(8)
            )
        ),
        timeout=120,
    )
    print(f"8 concurrent 8-token requests: {time.perf_counter() - started:.2f} s")
    for deltas in results:
        usage = final_usage(deltas)
        assert 0 < usage.completion_tokens <= 8
    assert engine.num_unfinished_requests() == 0


async def test_guided_choice_answers_one_of_the_choices(engine: VLLMEngine) -> None:
    choices = ["printer_offline", "paper_jam", "other"]
    for question in ("My receipts come out blank", "It says offline", "hello?"):
        deltas = await collect(
            engine, user(question), response_format={"type": "choice", "choice": choices}
        )
        assert "".join(d.text for d in deltas) in choices
        assert deltas[-1].finish_reason == "stop"


async def test_regex_guidance_matches(engine: VLLMEngine) -> None:
    deltas = await collect(
        engine,
        user("Which store number?"),
        response_format={"type": "regex", "regex": r"store-[0-9]{3}"},
        max_tokens=16,
    )
    assert re.fullmatch(r"store-[0-9]{3}", "".join(d.text for d in deltas))


async def test_json_schema_answer_parses_and_matches(engine: VLLMEngine) -> None:
    schema = OPEN_TICKET["function"]["parameters"]
    deltas = await collect(
        engine,
        user("Classify this call."),
        response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": schema}},
        max_tokens=32,
    )
    assert deltas[-1].finish_reason == "stop"
    answer = json.loads("".join(d.text for d in deltas))
    assert not list(validator_for(schema)(schema).iter_errors(answer))


async def test_named_tool_choice_returns_a_valid_call(engine: VLLMEngine) -> None:
    deltas = await collect(
        engine,
        user("Restart the front printer please."),
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "restart_printer"}},
        max_tokens=48,
    )
    calls = [d.tool_call for d in deltas if d.tool_call]
    assert len(calls) == 1
    assert calls[0].name == "restart_printer"
    assert json.loads(calls[0].arguments)["printer"] in ("front", "back")
    assert calls[0].id.startswith("call_")
    assert not any(d.text for d in deltas), "a forced tool call speaks no text"
    assert deltas[-1].finish_reason == "tool_calls"


async def test_required_tool_choice_picks_one_of_the_tools(engine: VLLMEngine) -> None:
    deltas = await collect(
        engine, user("Do something."), tools=TOOLS, tool_choice="required", max_tokens=64
    )
    calls = [d.tool_call for d in deltas if d.tool_call]
    assert len(calls) == 1
    spec = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    assert calls[0].name in spec
    arguments = json.loads(calls[0].arguments)
    assert not list(validator_for(spec[calls[0].name])(spec[calls[0].name]).iter_errors(arguments))


async def test_closing_the_stream_aborts_the_request(engine: VLLMEngine) -> None:
    stream = engine.chat(user("Tell me a very long story."), max_tokens=1500)
    first = await anext(stream)
    assert first.text
    await stream.aclose()
    await _until_no_requests(engine)


async def test_cancelling_the_consumer_aborts_the_request(engine: VLLMEngine) -> None:
    got_text = asyncio.Event()

    async def consume() -> None:
        async for delta in engine.chat(user("Another long story."), max_tokens=1500):
            if delta.text:
                got_text.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_text.wait(), timeout=60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _until_no_requests(engine)


async def _until_no_requests(engine: VLLMEngine) -> None:
    for _ in range(100):  # at most ~5 s
        if engine.num_unfinished_requests() == 0:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"{engine.num_unfinished_requests()} request(s) still running in vLLM")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"messages": []}, "must not be empty"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "unknown role"),
        (
            {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "nope",
        ),
        ({"tool_choice": "required"}, "needs at least one tool"),
        ({"response_format": {"type": "yaml"}}, "response_format type"),
        ({"response_format": {"type": "choice", "choice": []}}, "non-empty list"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": 5}}}},
            "not a valid JSON schema",
        ),
        # Rejected by vLLM's grammar compiler (xgrammar), not by our own checks:
        ({"response_format": {"type": "regex", "regex": "("}}, "parenthesis is not closed"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"schema": {"type": "string", "pattern": "(?<=a)b"}},
                }
            },
            "Lookbehind is not supported",
        ),
        ({"max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "printer " * 3000}]}, "context holds 2048"),
    ],
)
async def test_bad_input_is_a_clear_error_and_the_engine_keeps_serving(
    engine: VLLMEngine, kwargs: dict, message: str
) -> None:
    request = {"messages": user("hi"), **kwargs}
    with pytest.raises(BadInput, match=message):
        await collect(engine, **request)
    assert final_usage(await collect(engine, user("still there?"), max_tokens=2))
