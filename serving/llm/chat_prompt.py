"""OpenAI chat messages -> checked messages -> prompt text via the model's own chat template.

The template is the Jinja source stored in the GGUF (`tokenizer.chat_template`), rendered
the way Hugging Face tokenizers render it, so the prompt matches what the model was tuned on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from serving.base import BadInput, Message, Tool

ROLES = ("system", "user", "assistant", "tool")


def check_messages(messages: Sequence[Message]) -> list[Message]:
    """Validate OpenAI chat messages and return template-ready copies.

    Content parts are joined into one string and tool-call arguments (JSON text in the
    OpenAI format) become objects, which is what chat templates expect.
    """
    if isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Sequence):
        raise BadInput("messages must be a list of {'role': ..., 'content': ...} objects")
    if not messages:
        raise BadInput("messages must not be empty")
    checked = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, Mapping):
            raise BadInput(f"{where} must be an object with 'role' and 'content'")
        role = message.get("role")
        if role not in ROLES:
            raise BadInput(f"{where} has unknown role {role!r} (expected one of {ROLES})")
        content = _content_text(message.get("content"), where)
        tool_calls = _tool_calls(message.get("tool_calls"), where) if role == "assistant" else []
        if content is None and not tool_calls:
            raise BadInput(f"{where} ({role}) has no content")
        fixed: Message = {"role": role, "content": content or ""}
        if tool_calls:
            fixed["tool_calls"] = tool_calls
        for key in ("name", "tool_call_id"):
            if isinstance(message.get(key), str):
                fixed[key] = message[key]
        checked.append(fixed)
    return checked


def _content_text(content: Any, where: str) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, Mapping) or part.get("type") != "text":
                raise BadInput(f"{where}: only text content parts are supported")
            if not isinstance(part.get("text"), str):
                raise BadInput(f"{where}: a text part needs a 'text' string")
            texts.append(part["text"])
        return "".join(texts)
    raise BadInput(f"{where}: content must be a string or a list of text parts")


def _tool_calls(calls: Any, where: str) -> list[dict[str, Any]]:
    if calls is None:
        return []
    if not isinstance(calls, list):
        raise BadInput(f"{where}: tool_calls must be a list")
    fixed = []
    for index, call in enumerate(calls):
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise BadInput(f"{where}.tool_calls[{index}] needs a function with a name")
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments or "{}")
            except ValueError as exc:
                raise BadInput(
                    f"{where}.tool_calls[{index}]: arguments are not valid JSON: {exc}"
                ) from exc
        fixed.append(
            {
                "id": call.get("id", ""),
                "type": "function",
                "function": {"name": function["name"], "arguments": arguments},
            }
        )
    return fixed


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, **_: Any) -> str:
    # Hugging Face's tojson: plain JSON, no HTML escaping (Jinja's own escapes < > &).
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent)


def _raise_exception(message: str) -> None:
    raise BadInput(f"chat template refused the messages: {message}")


class ChatTemplate:
    """A model's Jinja chat template, compiled once in a sandbox."""

    def __init__(self, source: str, bos_token: str = "", eos_token: str = "") -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        self._template = env.from_string(source)
        self._tokens = {"bos_token": bos_token, "eos_token": eos_token}

    def render(
        self,
        messages: Sequence[Message],
        tools: Sequence[Tool] | None = None,
        add_generation_prompt: bool = True,
    ) -> str:
        try:
            return self._template.render(
                messages=list(messages),
                tools=list(tools) if tools else None,
                add_generation_prompt=add_generation_prompt,
                **self._tokens,
            )
        except jinja2.TemplateError as exc:
            raise BadInput(f"chat template could not render the messages: {exc}") from exc

    def stable_prefix(self, messages: Sequence[Message], tools: Sequence[Tool] | None) -> str:
        """The prompt text that stays the same across a conversation's turns: the leading
        system message with the tools. Empty when there is no system message."""
        if not messages or messages[0]["role"] != "system":
            return ""
        return self.render(messages[:1], tools, add_generation_prompt=False)


def check_sampling(max_tokens: int, temperature: float) -> None:
    """BadInput unless max_tokens is a positive int and temperature lies in [0, 2]."""
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise BadInput(f"max_tokens must be a positive integer, got {max_tokens!r}")
    if not isinstance(temperature, int | float) or not 0.0 <= temperature <= 2.0:
        raise BadInput(f"temperature must be between 0 and 2, got {temperature!r}")
