"""Tool-call parsing and validation: what a model writes -> calls we can trust."""

from __future__ import annotations

import json

import pytest

from serving.base import BadInput, ToolCall
from serving.llm.chat_prompt import ChatTemplate, check_messages
from serving.llm.prefix_cache import PrefixStateCache
from serving.llm.tool_calls import (
    ToolChoice,
    check_json_schema,
    forced_call_schema,
    parse_call_json,
    parse_hermes,
    resolve_tool_choice,
    validate_tool_call,
)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "check_printer",
            "description": "Status of the receipt printer on a checkout lane",
            "parameters": {
                "type": "object",
                "properties": {"lane": {"type": "integer", "minimum": 1, "maximum": 40}},
                "required": ["lane"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "open_ticket",
            "parameters": {
                "type": "object",
                "properties": {
                    "summary": {"type": "string"},
                    "priority": {"enum": ["low", "high"]},
                },
                "required": ["summary"],
            },
        },
    },
]


def call(name: str, arguments: str) -> ToolCall:
    return ToolCall("call_test", name, arguments)


# ---------------------------------------------------------------- parse_hermes


def test_parse_hermes_splits_text_and_calls_in_order() -> None:
    text = (
        "Let me check that for you.\n"
        '<tool_call>\n{"name": "check_printer", "arguments": {"lane": 4}}\n</tool_call>\n'
        '<tool_call>\n{"name": "open_ticket", "arguments": {"summary": "no paper"}}\n</tool_call>'
    )
    rest, calls = parse_hermes(text)
    assert rest == "Let me check that for you."
    assert [c.name for c in calls] == ["check_printer", "open_ticket"]
    assert json.loads(calls[0].arguments) == {"lane": 4}
    assert json.loads(calls[1].arguments) == {"summary": "no paper"}
    assert calls[0].id != calls[1].id and calls[0].id.startswith("call_")


def test_parse_hermes_without_calls_returns_the_text() -> None:
    assert parse_hermes("Have you tried turning it off and on?") == (
        "Have you tried turning it off and on?",
        [],
    )


def test_parse_hermes_accepts_an_unclosed_block_and_parameters_key() -> None:
    rest, calls = parse_hermes('<tool_call>{"name": "check_printer", "parameters": {"lane": 2}}')
    assert rest == ""
    assert calls[0].name == "check_printer" and json.loads(calls[0].arguments) == {"lane": 2}


def test_parse_hermes_keeps_string_arguments_as_json_text() -> None:
    _, calls = parse_hermes(
        '<tool_call>{"name": "check_printer", "arguments": "{\\"lane\\": 3}"}</tool_call>'
    )
    assert json.loads(calls[0].arguments) == {"lane": 3}


def test_broken_block_becomes_a_call_that_fails_validation_with_a_reason() -> None:
    _, calls = parse_hermes(
        '<tool_call>{"name": "check_printer", "arguments": {lane: 4}</tool_call>'
    )
    assert calls[0].name == "check_printer"
    with pytest.raises(BadInput, match="not valid JSON"):
        validate_tool_call(calls[0], TOOLS)


# ---------------------------------------------------------------- parse_call_json


def test_parse_call_json_wrapped_and_bare_forms() -> None:
    wrapped = parse_call_json('{"name": "open_ticket", "arguments": {"summary": "jam"}}')
    assert wrapped.name == "open_ticket" and json.loads(wrapped.arguments) == {"summary": "jam"}
    bare = parse_call_json('{"lane": 9}', tool_name="check_printer")
    assert bare.name == "check_printer" and json.loads(bare.arguments) == {"lane": 9}
    tagged = parse_call_json('<tool_call>\n{"name": "check_printer", "arguments": {"lane": 1}}')
    assert json.loads(tagged.arguments) == {"lane": 1}


def test_parse_call_json_rejects_non_objects() -> None:
    with pytest.raises(BadInput, match="not valid JSON"):
        parse_call_json("lane four please")
    with pytest.raises(BadInput, match="JSON object"):
        parse_call_json("[1, 2]", tool_name="check_printer")
    with pytest.raises(BadInput, match='"name" and "arguments"'):
        parse_call_json('{"lane": 4}')


# ---------------------------------------------------------------- validate_tool_call


def test_valid_call_passes() -> None:
    validate_tool_call(call("check_printer", '{"lane": 4}'), TOOLS)
    validate_tool_call(call("open_ticket", '{"summary": "x", "priority": "high"}'), TOOLS)


@pytest.mark.parametrize(
    ("tool_call", "problem"),
    [
        (call("reboot_store", "{}"), "unknown tool 'reboot_store'"),
        (call("check_printer", "lane=4"), "not valid JSON"),
        (call("check_printer", "[4]"), "must be a JSON object"),
        (call("check_printer", "{}"), "'lane' is a required property"),
        (call("check_printer", '{"lane": "four"}'), "at lane: 'four' is not of type 'integer'"),
        (call("check_printer", '{"lane": 99}'), "99 is greater than the maximum of 40"),
        (call("check_printer", '{"lane": 4, "rm": "-rf"}'), "Additional properties"),
        (call("open_ticket", '{"summary": "x", "priority": "urgent"}'), "at priority"),
    ],
)
def test_invalid_calls_name_the_problem(tool_call: ToolCall, problem: str) -> None:
    with pytest.raises(BadInput, match=problem.replace("(", r"\(").replace(")", r"\)")):
        validate_tool_call(tool_call, TOOLS)


def test_tools_themselves_are_checked() -> None:
    bad_schema = [{"type": "function", "function": {"name": "x", "parameters": {"type": 5}}}]
    with pytest.raises(BadInput, match="parameters of tool 'x' is not a valid JSON schema"):
        validate_tool_call(call("x", "{}"), bad_schema)
    duplicate = [TOOLS[0], TOOLS[0]]
    with pytest.raises(BadInput, match="duplicate tool name"):
        resolve_tool_choice("auto", duplicate)
    with pytest.raises(BadInput, match="function name"):
        resolve_tool_choice("auto", [{"type": "function", "function": {"name": "rm -rf"}}])


def test_tool_without_parameters_takes_an_empty_object() -> None:
    tools = [{"type": "function", "function": {"name": "ping"}}]
    validate_tool_call(call("ping", "{}"), tools)


# ---------------------------------------------------------------- tool_choice


def test_tool_choice_forms() -> None:
    assert resolve_tool_choice(None, TOOLS) == ToolChoice("auto")
    assert resolve_tool_choice(None, None) == ToolChoice("none")
    assert resolve_tool_choice("auto", []) == ToolChoice("none")
    assert resolve_tool_choice("none", TOOLS) == ToolChoice("none")
    assert resolve_tool_choice("required", TOOLS).forced
    named = resolve_tool_choice({"type": "function", "function": {"name": "open_ticket"}}, TOOLS)
    assert named == ToolChoice("named", "open_ticket") and named.forced


@pytest.mark.parametrize(
    ("tool_choice", "tools", "problem"),
    [
        ({"type": "function", "function": {"name": "reboot"}}, TOOLS, "not in tools"),
        ({"type": "function"}, TOOLS, "must be"),
        ("required", None, "needs at least one tool"),
        ("always", TOOLS, "must be 'none', 'auto', 'required'"),
    ],
)
def test_bad_tool_choice(tool_choice: object, tools: object, problem: str) -> None:
    with pytest.raises(BadInput, match=problem):
        resolve_tool_choice(tool_choice, tools)  # type: ignore[arg-type]


def test_forced_call_schema_accepts_only_calls_to_the_chosen_tools() -> None:
    from jsonschema import Draft202012Validator

    named = forced_call_schema(ToolChoice("named", "check_printer"), TOOLS)
    validator = Draft202012Validator(named)
    assert validator.is_valid({"name": "check_printer", "arguments": {"lane": 4}})
    assert not validator.is_valid({"name": "open_ticket", "arguments": {"summary": "x"}})
    anyone = Draft202012Validator(forced_call_schema(ToolChoice("required"), TOOLS))
    assert anyone.is_valid({"name": "open_ticket", "arguments": {"summary": "x"}})
    assert not anyone.is_valid({"name": "check_printer", "arguments": {"lane": "4"}})


def test_check_json_schema() -> None:
    check_json_schema({"type": "object", "properties": {"a": {"type": "string"}}}, "schema")
    with pytest.raises(BadInput, match="not a valid JSON schema"):
        check_json_schema({"type": "objekt"}, "schema")
    with pytest.raises(BadInput, match="must be a JSON schema object"):
        check_json_schema(["type"], "schema")


# ---------------------------------------------------------------- prefix state LRU


def test_prefix_cache_finds_the_longest_saved_prefix_and_evicts_lru() -> None:
    cache = PrefixStateCache(max_entries=2)
    cache.put([1, 2, 3], b"short")
    cache.put([1, 2, 3, 4, 5], b"long")
    hit = cache.longest_prefix_of([1, 2, 3, 4, 5, 6])
    assert hit is not None and hit.state == b"long"
    assert cache.longest_prefix_of([1, 2, 3, 9]).state == b"short"  # type: ignore[union-attr]
    assert cache.longest_prefix_of([7, 8]) is None
    cache.put([7, 8], b"other")  # evicts the least recently used: [1, 2, 3, 4, 5]
    assert [1, 2, 3] in cache and [7, 8] in cache and [1, 2, 3, 4, 5] not in cache


def test_prefix_cache_respects_its_byte_budget() -> None:
    cache = PrefixStateCache(max_entries=8, max_bytes=10)
    cache.put([1], b"123456")
    cache.put([2], b"123456")
    assert len(cache) == 1 and [2] in cache
    cache.put([3], b"x" * 11)  # larger than the whole budget: not kept
    assert [3] not in cache


# ---------------------------------------------------------------- messages for the template


def test_messages_are_checked_and_tool_history_prepared_for_templates() -> None:
    messages = check_messages(
        [
            {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": "Lane 4 is out of paper."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {
                            "name": "check_printer",
                            "arguments": '{"lane": 4, "note": "<jam>"}',
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"paper": "empty"}'},
        ]
    )
    assert messages[0]["content"] == "Be brief."
    assert messages[2]["content"] == ""
    assert messages[2]["tool_calls"][0]["function"]["arguments"] == {"lane": 4, "note": "<jam>"}
    template = ChatTemplate(
        "{% for m in messages %}{{ m.role }}: {{ m.content }}"
        "{% for c in m.tool_calls or [] %}{{ c.function.arguments | tojson }}{% endfor %}"
        "{{ '\\n' }}{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
    )
    prompt = template.render(messages)
    # Arguments appear once as JSON, not as a JSON-encoded string, and "<" is not escaped.
    assert 'assistant: {"lane": 4, "note": "<jam>"}' in prompt and prompt.endswith("assistant:")
    assert template.stable_prefix(messages, None) == "system: Be brief.\n"


@pytest.mark.parametrize(
    ("messages", "problem"),
    [
        ([], "must not be empty"),
        ("hello", "must be a list"),
        ([{"role": "robot", "content": "x"}], "unknown role 'robot'"),
        ([{"role": "user", "content": None}], "has no content"),
        ([{"role": "user", "content": [{"type": "image_url"}]}], "only text content"),
        ([{"role": "user", "content": 42}], "content must be a string"),
        (
            [{"role": "assistant", "tool_calls": [{"function": {"name": "x", "arguments": "{"}}]}],
            "arguments are not valid JSON",
        ),
    ],
)
def test_bad_messages(messages: object, problem: str) -> None:
    with pytest.raises(BadInput, match=problem):
        check_messages(messages)  # type: ignore[arg-type]


def test_template_errors_are_bad_input() -> None:
    template = ChatTemplate("{{ raise_exception('roles must alternate') }}")
    with pytest.raises(BadInput, match="roles must alternate"):
        template.render([{"role": "user", "content": "hi"}])
