"""Tool registry: each tool is a JSON-schema function plus an async executor.

Arguments are validated against the schema before the executor runs, anything not
registered is refused, and results come back JSON-serialisable, ready for the LLM.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from agent.tools.errors import ToolRefused

Executor = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]
    run: Executor

    def openai_tool(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


class ToolRegistry:
    def __init__(self, tools: list[ToolSpec] | None = None) -> None:
        self._tools: dict[str, ToolSpec] = {}
        self._validators: dict[str, Draft202012Validator] = {}
        for tool in tools or []:
            self.register(tool)

    def register(self, tool: ToolSpec) -> None:
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} is already registered")
        params = tool.parameters
        if params.get("type") != "object" or params.get("additionalProperties") is not False:
            # Closed schemas only: an LLM must not be able to smuggle in extra arguments.
            raise ValueError(
                f"tool {tool.name!r}: parameters must be an object schema with "
                "additionalProperties: false"
            )
        try:
            Draft202012Validator.check_schema(params)
        except SchemaError as exc:
            raise ValueError(f"tool {tool.name!r}: invalid JSON schema: {exc.message}") from exc
        self._tools[tool.name] = tool
        self._validators[tool.name] = Draft202012Validator(params)

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def schemas(self) -> list[dict[str, Any]]:
        """The tools in OpenAI `tools` form, for the LLM request."""
        return [tool.openai_tool() for tool in self._tools.values()]

    def validate(self, name: str, arguments: str | Mapping[str, Any] | None) -> dict[str, Any]:
        tool = self._tools.get(name)
        if tool is None:
            raise ToolRefused(f"unknown tool {name!r}; available: {', '.join(self._tools)}")
        if arguments is None or arguments == "":
            args: Any = {}
        elif isinstance(arguments, str):
            try:
                args = json.loads(arguments)
            except json.JSONDecodeError as exc:
                raise ToolRefused(f"{name}: arguments are not valid JSON: {exc.msg}") from None
        else:
            args = dict(arguments)
        if not isinstance(args, dict):
            raise ToolRefused(f"{name}: arguments must be a JSON object")
        errors = sorted(self._validators[name].iter_errors(args), key=lambda e: list(e.path))
        if errors:
            first = errors[0]
            where = "/".join(str(part) for part in first.path) or "arguments"
            raise ToolRefused(f"{name}: {where}: {first.message}")
        return args

    async def execute(self, name: str, arguments: str | Mapping[str, Any] | None) -> Any:
        """Validate, run, and return a JSON-serialisable result."""
        args = self.validate(name, arguments)
        result = await self._tools[name].run(**args)
        return to_jsonable(result)


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"tool result of type {type(value).__name__} is not JSON-serialisable")
