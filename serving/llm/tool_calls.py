"""Tool-call helpers shared by the LLM engines.

Open models emit tool calls as text (Qwen/hermes: `<tool_call>{"name": ..., "arguments":
...}</tool_call>`) and small ones get them wrong often enough that every call is checked
against the tool's JSON schema before anyone acts on it.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import jsonschema
from jsonschema.validators import validator_for

from serving.base import BadInput, Message, Tool, ToolCall

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"

# A block runs to its closing tag, or to the end of the text when generation stopped first.
_BLOCK = re.compile(
    re.escape(TOOL_CALL_OPEN) + r"(.*?)(?:" + re.escape(TOOL_CALL_CLOSE) + r"|\Z)", re.S
)
_NAME_IN_BROKEN_JSON = re.compile(r'"name"\s*:\s*"([^"\\]*)"')
_EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


# ---------------------------------------------------------------- parsing


def parse_hermes(text: str) -> tuple[str, list[ToolCall]]:
    """Split model output into (text outside tool-call blocks, calls in order).

    A block whose body is not a JSON object with a name still becomes a ToolCall (its raw
    body as arguments), so validate_tool_call reports what is wrong instead of the call
    silently turning into spoken text.
    """
    calls = [_call_from_block(match.group(1)) for match in _BLOCK.finditer(text)]
    remaining = _BLOCK.sub("", text).strip()
    return remaining, calls


def parse_call_json(text: str, tool_name: str | None = None) -> ToolCall:
    """One call from a JSON object: `{"name", "arguments"}` or, when `tool_name` is given
    (a named tool_choice), also the bare arguments object.

    Raises BadInput when the text is not such an object.
    """
    body = text.strip()
    if body.startswith(TOOL_CALL_OPEN):
        _, calls = parse_hermes(body)
        if len(calls) == 1:
            return calls[0]
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise BadInput(f"tool call is not valid JSON ({exc}): {body[:200]!r}") from exc
    if not isinstance(value, dict):
        raise BadInput(f"tool call must be a JSON object, got {type(value).__name__}")
    wrapped = isinstance(value.get("name"), str) and "arguments" in value
    if wrapped and (tool_name is None or value["name"] == tool_name):
        return ToolCall(new_call_id(), value["name"], _arguments_text(value["arguments"]))
    if tool_name is None:
        raise BadInput(f'tool call needs "name" and "arguments": {body[:200]!r}')
    return ToolCall(new_call_id(), tool_name, json.dumps(value, ensure_ascii=False))


def _call_from_block(body: str) -> ToolCall:
    body = body.strip()
    try:
        value, _ = json.JSONDecoder().raw_decode(body)
    except ValueError:
        value = None
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        # Some fine-tunes say "parameters" where the template says "arguments".
        arguments = value.get("arguments", value.get("parameters", {}))
        return ToolCall(new_call_id(), value["name"], _arguments_text(arguments))
    guessed = _NAME_IN_BROKEN_JSON.search(body)
    return ToolCall(new_call_id(), guessed.group(1) if guessed else "", body)


def _arguments_text(arguments: Any) -> str:
    # A string is taken as already-encoded JSON; validation says so if it is not.
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments, ensure_ascii=False)


# ---------------------------------------------------------------- validation


def check_json_schema(schema: Any, what: str) -> None:
    """BadInput unless `schema` is a valid JSON schema (draft taken from `$schema`)."""
    if not isinstance(schema, Mapping):
        raise BadInput(f"{what} must be a JSON schema object, got {type(schema).__name__}")
    try:
        validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise BadInput(f"{what} is not a valid JSON schema: {exc.message}") from exc


def tool_specs(tools: Sequence[Tool] | None) -> dict[str, dict[str, Any]]:
    """Check OpenAI-style tools and return name -> function spec (with parameters)."""
    specs: dict[str, dict[str, Any]] = {}
    if tools is None:
        return specs
    if isinstance(tools, str | bytes | Mapping) or not isinstance(tools, Sequence):
        raise BadInput("tools must be a list of {'type': 'function', 'function': {...}}")
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if not isinstance(tool, Mapping) or tool.get("type", "function") != "function":
            raise BadInput(f"{where} must be {{'type': 'function', 'function': {{...}}}}")
        function = tool.get("function")
        if not isinstance(function, Mapping):
            raise BadInput(f"{where} has no 'function' object")
        name = function.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", name):
            raise BadInput(f"{where}: function name must be 1-64 of [A-Za-z0-9_.-], got {name!r}")
        if name in specs:
            raise BadInput(f"{where}: duplicate tool name {name!r}")
        parameters = function.get("parameters") or _EMPTY_PARAMETERS
        check_json_schema(parameters, f"parameters of tool {name!r}")
        specs[name] = {**function, "parameters": parameters}
    return specs


def validate_tool_call(call: ToolCall, tools: Sequence[Tool] | None) -> None:
    """BadInput naming the problem: unknown tool, non-JSON or schema-invalid arguments."""
    specs = tool_specs(tools)
    if call.name not in specs:
        known = ", ".join(sorted(specs)) or "none"
        raise BadInput(f"tool call names unknown tool {call.name!r} (tools: {known})")
    try:
        arguments = json.loads(call.arguments)
    except ValueError as exc:
        raise BadInput(
            f"arguments of tool call {call.name!r} are not valid JSON ({exc}): "
            f"{call.arguments[:200]!r}"
        ) from exc
    if not isinstance(arguments, dict):
        raise BadInput(f"arguments of tool call {call.name!r} must be a JSON object")
    schema = specs[call.name]["parameters"]
    errors = sorted(validator_for(schema)(schema).iter_errors(arguments), key=_error_order)
    if errors:
        first = errors[0]
        where = "/".join(str(part) for part in first.absolute_path) or "(top level)"
        raise BadInput(
            f"arguments of tool call {call.name!r} do not match its schema at {where}: "
            f"{first.message}"
        )


def _error_order(error: jsonschema.ValidationError) -> tuple[int, str]:
    return (len(error.absolute_path), str(list(error.absolute_path)))


# ---------------------------------------------------------------- tool_choice


@dataclass(frozen=True)
class ToolChoice:
    """A request's tool_choice, checked against its tools."""

    mode: Literal["none", "auto", "required", "named"]
    name: str | None = None  # set for "named"

    @property
    def forced(self) -> bool:
        return self.mode in ("required", "named")


def resolve_tool_choice(
    tool_choice: str | Mapping[str, Any] | None, tools: Sequence[Tool] | None
) -> ToolChoice:
    """OpenAI tool_choice -> ToolChoice; BadInput when it cannot be honoured."""
    specs = tool_specs(tools)
    if isinstance(tool_choice, Mapping):
        function = tool_choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if tool_choice.get("type") != "function" or not isinstance(name, str):
            raise BadInput(
                "tool_choice object must be {'type': 'function', 'function': {'name': ...}}"
            )
        if name not in specs:
            known = ", ".join(sorted(specs)) or "none given"
            raise BadInput(f"tool_choice names tool {name!r}, which is not in tools ({known})")
        return ToolChoice("named", name)
    if tool_choice is None:
        return ToolChoice("auto" if specs else "none")
    if tool_choice == "required":
        if not specs:
            raise BadInput("tool_choice 'required' needs at least one tool")
        return ToolChoice("required")
    if tool_choice in ("auto", "none"):
        return ToolChoice(tool_choice if specs else "none")
    raise BadInput(
        f"tool_choice must be 'none', 'auto', 'required' or a named function, got {tool_choice!r}"
    )


def forced_call_schema(choice: ToolChoice, tools: Sequence[Tool]) -> dict[str, Any]:
    """JSON schema of `{"name": ..., "arguments": {...}}` for a forced tool choice: the
    named tool, or (required) any one of the tools. Grammar engines constrain to it."""
    specs = tool_specs(tools)
    names = [choice.name] if choice.mode == "named" and choice.name else list(specs)
    options = [
        {
            "type": "object",
            "properties": {"name": {"const": name}, "arguments": specs[name]["parameters"]},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for name in names
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


@dataclass
class ToolTagSplitter:
    """Streams an LLM's text through until a tool call starts, then holds the rest back.

    A partial tag at the end of the text is held too, so "<tool" never reaches TTS. With
    `bare_json_calls`, an answer that opens with "{" is held as well: small models often
    write the call's JSON without the tags, and a spoken answer never starts with a brace.
    """

    bare_json_calls: bool = False
    tail: str | None = None  # text from the start of the call on, once seen
    _pending: str = field(default="", repr=False)
    _speaking: bool = field(default=False, repr=False)

    def feed(self, text: str) -> str:
        if self.tail is not None:
            self.tail += text
            return ""
        self._pending += text
        if self.bare_json_calls and not self._speaking:
            head = self._pending.lstrip()
            if not head:
                return ""
            if head.startswith("{"):
                self.tail, self._pending = head, ""
                return ""
            self._speaking = True
        at = self._pending.find(TOOL_CALL_OPEN)
        if at >= 0:
            out, self.tail, self._pending = self._pending[:at], self._pending[at:], ""
            return out
        keep = _partial_tag_length(self._pending)
        cut = len(self._pending) - keep
        out, self._pending = self._pending[:cut], self._pending[cut:]
        return out

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return out


def _partial_tag_length(text: str) -> int:
    for size in range(min(len(TOOL_CALL_OPEN) - 1, len(text)), 0, -1):
        if text.endswith(TOOL_CALL_OPEN[:size]):
            return size
    return 0


def tool_request_message(text: str, calls: Sequence[ToolCall]) -> Message:
    """The assistant turn that asked for `calls`, as it goes back into the conversation."""
    return {
        "role": "assistant",
        "content": text,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in calls
        ],
    }


def tool_result_message(call: ToolCall, content: str) -> Message:
    """A tool's result, answering `call`, as it goes back into the conversation."""
    return {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": content}
