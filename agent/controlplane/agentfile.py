"""Agents as YAML (GitOps): parse, apply to the database, export back.

One YAML document is one agent; a file may hold several (`---`). Applying is
declarative and idempotent: the agent, its template and its goals are matched by
name and created or updated; its instructions, goal and domain assignments
become exactly what the file lists. Domain entries are matched by
(domain_name, knowledge_type, content), so re-applying never duplicates them.

    name: Appointment Scheduler
    template: {name: Receptionist, base_prompt: "...", voice_config: {speed: 1.0}}
    voice_id: maya
    goals:
      - {name: schedule_appointment, success_criteria: {has_date: true}, priority: 10}
    instructions:
      dos: ["Offer multiple time slots"]          # or a list of
      donts: ["Don't discuss pricing"]            # {type, instruction, priority, active}
    domains:
      - {domain_name: medical_appointments, knowledge_type: policy, content: "..."}
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from agent.controlplane import schemas, service
from agent.controlplane.errors import ControlPlaneError
from agent.controlplane.models import (
    AgentConfig,
    AgentDomain,
    AgentGoal,
    AgentInstruction,
    AgentTemplate,
    ConversationGoal,
    DomainKnowledge,
)


class AgentFileError(ControlPlaneError, ValueError):
    """The YAML is unreadable or does not describe a valid agent; names where."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GoalSpec(schemas.GoalIn):
    priority: schemas.Priority = 0
    active: bool = True


class InstructionSpec(_Strict):
    type: schemas.InstructionType
    instruction: schemas.Content
    priority: schemas.Priority = 0
    active: bool = True


class DosAndDonts(_Strict):
    dos: list[schemas.Content] = Field(default_factory=list)
    donts: list[schemas.Content] = Field(default_factory=list)

    def as_specs(self) -> list[InstructionSpec]:
        # Listed first matters most: priority counts down in file order.
        specs = []
        for kind, texts in (("do", self.dos), ("dont", self.donts)):
            for i, text in enumerate(texts):
                specs.append(
                    InstructionSpec(type=kind, instruction=text, priority=len(texts) - i)  # type: ignore[arg-type]
                )
        return specs


class AgentSpec(_Strict):
    name: schemas.Name
    description: schemas.Text | None = None
    template: schemas.TemplateIn | schemas.Name | None = None
    voice_id: schemas.VoiceId | None = None
    custom_settings: schemas.JsonObject = Field(default_factory=dict)
    goals: list[GoalSpec] = Field(default_factory=list)
    instructions: list[InstructionSpec] | DosAndDonts = Field(default_factory=list)
    domains: list[schemas.DomainIn] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_goals(self) -> AgentSpec:
        names = [g.name for g in self.goals]
        if len(names) != len(set(names)):
            raise ValueError("goals: each goal may be listed once")
        return self

    def instruction_specs(self) -> list[InstructionSpec]:
        if isinstance(self.instructions, DosAndDonts):
            return self.instructions.as_specs()
        return list(self.instructions)


def _where(error: dict[str, Any]) -> str:
    return ".".join(str(p) for p in error["loc"]) or "(document)"


def parse(text: str, source: str = "<yaml>") -> list[AgentSpec]:
    """Every agent in `text`; AgentFileError naming the document and field otherwise."""
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise AgentFileError(f"{source}: not valid YAML: {exc}") from None
    if not documents:
        raise AgentFileError(f"{source}: no agent in the file")
    specs = []
    for n, document in enumerate(documents, start=1):
        try:
            specs.append(AgentSpec.model_validate(document))
        except ValidationError as exc:
            problems = "; ".join(f"{_where(e)}: {e['msg']}" for e in exc.errors())
            raise AgentFileError(f"{source}, agent #{n}: {problems}") from None
    names = [s.name for s in specs]
    if len(names) != len(set(names)):
        raise AgentFileError(f"{source}: the same agent name appears twice")
    return specs


async def _by_name(session: AsyncSession, model: type[Any], name: str) -> Any:
    return await session.scalar(select(model).where(model.name == name))


async def _template_id(session: AsyncSession, spec: AgentSpec) -> int | None:
    if spec.template is None:
        return None
    if isinstance(spec.template, str):
        row = await _by_name(session, AgentTemplate, spec.template)
        if row is None:
            raise AgentFileError(f"agent {spec.name!r}: template {spec.template!r} does not exist")
        return row.id
    row = await _by_name(session, AgentTemplate, spec.template.name)
    if row is None:
        row = await service.create_template(session, spec.template)
    else:
        for key, value in spec.template.model_dump().items():
            setattr(row, key, value)
    await session.flush()
    return row.id


async def _goal_id(session: AsyncSession, goal: GoalSpec) -> int:
    fields = goal.model_dump(exclude={"priority", "active"})
    row = await _by_name(session, ConversationGoal, goal.name)
    if row is None:
        row = ConversationGoal(**fields)
        session.add(row)
    else:
        for key, value in fields.items():
            setattr(row, key, value)
    await session.flush()
    return row.id


async def _domain_id(session: AsyncSession, domain: schemas.DomainIn) -> int:
    row = await session.scalar(
        select(DomainKnowledge)
        .where(
            DomainKnowledge.domain_name == domain.domain_name,
            DomainKnowledge.knowledge_type == domain.knowledge_type,
            DomainKnowledge.content == domain.content,
        )
        .order_by(DomainKnowledge.id)
        .limit(1)
    )
    if row is None:
        row = await service.create_domain(session, domain)
    else:
        row.extra = domain.metadata
    await session.flush()
    return row.id


async def apply(session: AsyncSession, spec: AgentSpec) -> tuple[int, bool]:
    """Make the database hold `spec`; returns (agent id, whether it was created)."""
    template_id = await _template_id(session, spec)
    agent = await _by_name(session, AgentConfig, spec.name)
    created = agent is None
    if agent is None:
        agent = AgentConfig(name=spec.name)
        session.add(agent)
    agent.description = spec.description
    agent.template_id = template_id
    agent.voice_id = spec.voice_id
    agent.custom_settings = spec.custom_settings
    await session.flush()

    # Assignments and instructions are replaced wholesale: the file is the truth.
    await session.execute(delete(AgentGoal).where(AgentGoal.agent_id == agent.id))
    await session.execute(delete(AgentDomain).where(AgentDomain.agent_id == agent.id))
    await session.execute(delete(AgentInstruction).where(AgentInstruction.agent_id == agent.id))
    for goal in spec.goals:
        session.add(
            AgentGoal(
                agent_id=agent.id,
                goal_id=await _goal_id(session, goal),
                priority=goal.priority,
                active=goal.active,
            )
        )
    for domain_id in dict.fromkeys([await _domain_id(session, d) for d in spec.domains]):
        session.add(AgentDomain(agent_id=agent.id, domain_id=domain_id))
    for item in spec.instruction_specs():
        session.add(
            AgentInstruction(
                agent_id=agent.id,
                instruction_type=item.type,
                instruction=item.instruction,
                priority=item.priority,
                active=item.active,
            )
        )
    await session.flush()
    return agent.id, created


async def export(session: AsyncSession, agent_id: int) -> dict[str, Any]:
    """The agent as a YAML-ready mapping that `apply` turns back into the same agent."""
    detail = await service.agent_detail(session, agent_id)
    out: dict[str, Any] = {"name": detail.name}
    if detail.description is not None:
        out["description"] = detail.description
    if detail.template_id is not None:
        template = await service.get(session, AgentTemplate, detail.template_id)
        out["template"] = schemas.TemplateIn.model_validate(
            template, from_attributes=True
        ).model_dump(exclude_none=True)
    if detail.voice_id is not None:
        out["voice_id"] = detail.voice_id
    out["custom_settings"] = detail.custom_settings
    goals = []
    for link in detail.goals:
        goal = await service.get(session, ConversationGoal, link.goal_id)
        fields = schemas.GoalIn.model_validate(goal, from_attributes=True)
        goals.append(
            {
                **fields.model_dump(exclude_none=True),
                "priority": link.priority,
                "active": link.active,
            }
        )
    out["goals"] = goals
    out["instructions"] = [
        {
            "type": i.instruction_type,
            "instruction": i.instruction,
            "priority": i.priority,
            "active": i.active,
        }
        for i in detail.instructions
    ]
    domains = []
    for link in detail.domains:
        row = await service.get(session, DomainKnowledge, link.domain_id)
        domains.append(
            {
                "domain_name": row.domain_name,
                "knowledge_type": row.knowledge_type,
                "content": row.content,
                "metadata": row.extra,
            }
        )
    out["domains"] = domains
    return out


def dump(documents: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False, allow_unicode=True, width=100)
