"""The management API's request and response shapes (the OpenAPI contract).

Limits here mirror the columns, and text is checked for what a database refuses
(NUL characters, unpaired surrogates, non-finite numbers, absurd nesting), so bad
input is a 422 at the door rather than an error deep in the driver.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from models.voices import VOICE_ID_PATTERN

MAX_JSON_DEPTH = 16
DB_INT_MAX = 2**31 - 1  # ids and priorities are 32-bit INTEGER columns


def db_safe_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no unpaired surrogates)") from None
    return value


def _check_json(value: Any, depth: int = 0) -> None:
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        db_safe_text(value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("JSON numbers must be finite")
    elif isinstance(value, dict):
        for key, item in value.items():
            db_safe_text(key)
            _check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)


def _json_safe(value: dict[str, Any]) -> dict[str, Any]:
    _check_json(value)
    return value


def _voice_id(value: str) -> str:
    if not VOICE_ID_PATTERN.match(value):
        raise ValueError(
            "voice id must be 1-64 characters of a-z, 0-9, '-' and '_', starting with a "
            f"letter or digit (got {value!r})"
        )
    return value


def _webhook(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("completion_webhook must be an http:// or https:// URL with a host")
    return value


Name = Annotated[
    str, Field(min_length=1, max_length=255, pattern=r"\S"), AfterValidator(db_safe_text)
]
Text = Annotated[str, Field(max_length=20_000), AfterValidator(db_safe_text)]
Content = Annotated[
    str, Field(min_length=1, max_length=100_000, pattern=r"\S"), AfterValidator(db_safe_text)
]
JsonObject = Annotated[dict[str, Any], AfterValidator(_json_safe)]
VoiceId = Annotated[
    str,
    Field(max_length=64, json_schema_extra={"pattern": VOICE_ID_PATTERN.pattern}),
    AfterValidator(_voice_id),
]
WebhookUrl = Annotated[
    str, Field(max_length=2048), AfterValidator(db_safe_text), AfterValidator(_webhook)
]
RowId = Annotated[int, Field(ge=1, le=DB_INT_MAX)]
Priority = Annotated[int, Field(ge=-1_000_000, le=1_000_000)]
InstructionType = Literal["do", "dont"]
KnowledgeType = Literal["fact", "process", "policy"]

T = TypeVar("T")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Patch(_In):
    """Partial update: only the fields sent change; `null` only where a field allows it."""

    not_null: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _refuse_null(self) -> _Patch:
        for name in self.not_null:
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


# ---------------------------------------------------------------- templates


class TemplateIn(_In):
    name: Name
    description: Text | None = None
    base_prompt: Text | None = None
    voice_config: JsonObject = Field(default_factory=dict)


class TemplatePatch(_Patch):
    not_null = ("name", "voice_config")
    name: Name | None = None
    description: Text | None = None
    base_prompt: Text | None = None
    voice_config: JsonObject | None = None


class TemplateOut(_Out):
    id: int
    name: str
    description: str | None
    base_prompt: str | None
    voice_config: dict[str, Any]
    created_at: datetime


# ---------------------------------------------------------------- agents


class AgentIn(_In):
    name: Name
    description: Text | None = None
    template_id: RowId | None = None
    voice_id: VoiceId | None = None
    custom_settings: JsonObject = Field(default_factory=dict)


class AgentPatch(_Patch):
    not_null = ("name", "custom_settings")
    name: Name | None = None
    description: Text | None = None
    template_id: RowId | None = None
    voice_id: VoiceId | None = None
    custom_settings: JsonObject | None = None


class AgentOut(_Out):
    id: int
    name: str
    description: str | None
    template_id: int | None
    voice_id: str | None
    custom_settings: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class AgentGoalIn(_In):
    priority: Priority = 0
    active: bool = True


class AgentGoalOut(BaseModel):
    goal_id: int
    name: str
    priority: int
    active: bool


class AgentDomainOut(BaseModel):
    domain_id: int
    domain_name: str
    knowledge_type: KnowledgeType


class InstructionOut(_Out):
    id: int
    agent_id: int
    instruction_type: InstructionType
    instruction: str
    priority: int
    active: bool


class AgentDetail(AgentOut):
    """An agent with everything assigned to it, as the prompt compiler needs it."""

    goals: list[AgentGoalOut]
    domains: list[AgentDomainOut]
    instructions: list[InstructionOut]


# ---------------------------------------------------------------- goals


class GoalIn(_In):
    name: Name
    description: Text | None = None
    success_criteria: JsonObject = Field(default_factory=dict)
    required_data: list[Name] = Field(default_factory=list, max_length=100)
    completion_webhook: WebhookUrl | None = None


class GoalPatch(_Patch):
    not_null = ("name", "success_criteria", "required_data")
    name: Name | None = None
    description: Text | None = None
    success_criteria: JsonObject | None = None
    required_data: list[Name] | None = Field(default=None, max_length=100)
    completion_webhook: WebhookUrl | None = None


class GoalOut(_Out):
    id: int
    name: str
    description: str | None
    success_criteria: dict[str, Any]
    required_data: list[str]
    completion_webhook: str | None
    created_at: datetime


# ---------------------------------------------------------------- instructions


class InstructionIn(_In):
    agent_id: RowId
    instruction_type: InstructionType
    instruction: Content
    priority: Priority = 0
    active: bool = True


class InstructionPatch(_Patch):
    not_null = ("instruction_type", "instruction", "priority", "active")
    instruction_type: InstructionType | None = None
    instruction: Content | None = None
    priority: Priority | None = None
    active: bool | None = None


# ---------------------------------------------------------------- domains


class DomainIn(_In):
    domain_name: Name
    knowledge_type: KnowledgeType
    content: Content
    metadata: JsonObject = Field(default_factory=dict)


class DomainPatch(_Patch):
    not_null = ("domain_name", "knowledge_type", "content", "metadata")
    domain_name: Name | None = None
    knowledge_type: KnowledgeType | None = None
    content: Content | None = None
    metadata: JsonObject | None = None


class DomainOut(BaseModel):
    id: int
    domain_name: str
    knowledge_type: KnowledgeType
    content: str
    metadata: dict[str, Any]
    created_at: datetime
