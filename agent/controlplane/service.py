"""Queries behind the management API: one function per operation, on a session.

Every check that needs the database (unique names, referenced rows exist, a
template still in use) happens here and raises a typed error from `errors`, so
the API layer only maps errors to status codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agent.controlplane import schemas
from agent.controlplane.errors import InUse, InvalidField, NotFound
from agent.controlplane.models import (
    AgentConfig,
    AgentDomain,
    AgentGoal,
    AgentInstruction,
    AgentTemplate,
    ConversationGoal,
    DomainKnowledge,
)
from agent.records.models import Base

RowT = TypeVar("RowT", bound=Base)

# Table -> what users call one of its rows, for messages.
_KIND = {
    AgentTemplate: "template",
    AgentConfig: "agent",
    ConversationGoal: "goal",
    AgentInstruction: "instruction",
    DomainKnowledge: "domain knowledge entry",
}


async def page(
    session: AsyncSession, query: Select[Any], *, limit: int, offset: int
) -> tuple[Sequence[Any], int]:
    """One page of `query` (ordered by the caller) and the total count."""
    total = await session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = (await session.scalars(query.limit(limit).offset(offset))).all()
    return rows, int(total or 0)


async def get(session: AsyncSession, model: type[RowT], row_id: int) -> RowT:
    row = await session.get(model, row_id)
    if row is None:
        raise NotFound(f"{_KIND[model]} {row_id} not found")
    return row


async def _check_unique_name(
    session: AsyncSession, model: type[Any], name: str, *, exclude_id: int | None = None
) -> None:
    query = select(model.id).where(model.name == name)
    if exclude_id is not None:
        query = query.where(model.id != exclude_id)
    if await session.scalar(query) is not None:
        raise InvalidField("name", f"a {_KIND[model]} named {name!r} already exists")


async def _check_reference(
    session: AsyncSession, model: type[Any], row_id: int | None, field: str
) -> None:
    if row_id is not None and await session.get(model, row_id) is None:
        raise InvalidField(field, f"{field}: {_KIND[model]} {row_id} does not exist")


async def delete(session: AsyncSession, model: type[Any], row_id: int) -> None:
    row = await get(session, model, row_id)
    if model is AgentTemplate:
        used = await session.scalar(select(func.count()).where(AgentConfig.template_id == row_id))
        if used:
            raise InUse(f"template {row_id} is used by {used} agent(s); reassign them first")
    await session.delete(row)
    await session.flush()


def _apply(row: Any, changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        setattr(row, key, value)


# ---------------------------------------------------------------- templates


async def create_template(session: AsyncSession, data: schemas.TemplateIn) -> AgentTemplate:
    await _check_unique_name(session, AgentTemplate, data.name)
    row = AgentTemplate(**data.model_dump())
    session.add(row)
    await session.flush()
    return row


async def update_template(
    session: AsyncSession, row_id: int, data: schemas.TemplatePatch
) -> AgentTemplate:
    row = await get(session, AgentTemplate, row_id)
    changes = data.changes()
    if "name" in changes:
        await _check_unique_name(session, AgentTemplate, changes["name"], exclude_id=row_id)
    _apply(row, changes)
    await session.flush()
    return row


# ---------------------------------------------------------------- agents


async def create_agent(session: AsyncSession, data: schemas.AgentIn) -> AgentConfig:
    await _check_unique_name(session, AgentConfig, data.name)
    await _check_reference(session, AgentTemplate, data.template_id, "template_id")
    row = AgentConfig(**data.model_dump())
    session.add(row)
    await session.flush()
    return row


async def update_agent(session: AsyncSession, row_id: int, data: schemas.AgentPatch) -> AgentConfig:
    row = await get(session, AgentConfig, row_id)
    changes = data.changes()
    if "name" in changes:
        await _check_unique_name(session, AgentConfig, changes["name"], exclude_id=row_id)
    if "template_id" in changes:
        await _check_reference(session, AgentTemplate, changes["template_id"], "template_id")
    _apply(row, changes)
    await session.flush()
    await session.refresh(row)  # updated_at is set by the flush
    return row


async def agent_detail(session: AsyncSession, row_id: int) -> schemas.AgentDetail:
    agent = await get(session, AgentConfig, row_id)
    goals = await session.execute(
        select(AgentGoal, ConversationGoal.name)
        .join(ConversationGoal, ConversationGoal.id == AgentGoal.goal_id)
        .where(AgentGoal.agent_id == row_id)
        .order_by(AgentGoal.priority.desc(), AgentGoal.goal_id)
    )
    instructions = await session.scalars(
        select(AgentInstruction)
        .where(AgentInstruction.agent_id == row_id)
        .order_by(AgentInstruction.priority.desc(), AgentInstruction.id)
    )
    return schemas.AgentDetail(
        **schemas.AgentOut.model_validate(agent).model_dump(),
        goals=[
            schemas.AgentGoalOut(
                goal_id=link.goal_id, name=name, priority=link.priority, active=link.active
            )
            for link, name in goals
        ],
        domains=await agent_domains(session, row_id),
        instructions=[schemas.InstructionOut.model_validate(i) for i in instructions],
    )


# ---------------------------------------------------------------- goals


async def create_goal(session: AsyncSession, data: schemas.GoalIn) -> ConversationGoal:
    await _check_unique_name(session, ConversationGoal, data.name)
    row = ConversationGoal(**data.model_dump())
    session.add(row)
    await session.flush()
    return row


async def update_goal(
    session: AsyncSession, row_id: int, data: schemas.GoalPatch
) -> ConversationGoal:
    row = await get(session, ConversationGoal, row_id)
    changes = data.changes()
    if "name" in changes:
        await _check_unique_name(session, ConversationGoal, changes["name"], exclude_id=row_id)
    _apply(row, changes)
    await session.flush()
    return row


# ---------------------------------------------------------------- instructions


async def create_instruction(
    session: AsyncSession, data: schemas.InstructionIn
) -> AgentInstruction:
    await _check_reference(session, AgentConfig, data.agent_id, "agent_id")
    row = AgentInstruction(**data.model_dump())
    session.add(row)
    await session.flush()
    return row


async def update_instruction(
    session: AsyncSession, row_id: int, data: schemas.InstructionPatch
) -> AgentInstruction:
    row = await get(session, AgentInstruction, row_id)
    _apply(row, data.changes())
    await session.flush()
    return row


# ---------------------------------------------------------------- domains


def domain_out(row: DomainKnowledge) -> schemas.DomainOut:
    return schemas.DomainOut(
        id=row.id,
        domain_name=row.domain_name,
        knowledge_type=row.knowledge_type,  # type: ignore[arg-type]
        content=row.content,
        metadata=row.extra,
        created_at=row.created_at,
    )


async def create_domain(session: AsyncSession, data: schemas.DomainIn) -> DomainKnowledge:
    fields = data.model_dump()
    row = DomainKnowledge(extra=fields.pop("metadata"), **fields)
    session.add(row)
    await session.flush()
    return row


async def update_domain(
    session: AsyncSession, row_id: int, data: schemas.DomainPatch
) -> DomainKnowledge:
    row = await get(session, DomainKnowledge, row_id)
    changes = data.changes()
    if "metadata" in changes:
        changes["extra"] = changes.pop("metadata")
    _apply(row, changes)
    await session.flush()
    return row


# ---------------------------------------------------------------- assignments


async def assign_goal(
    session: AsyncSession, agent_id: int, goal_id: int, data: schemas.AgentGoalIn
) -> tuple[schemas.AgentGoalOut, bool]:
    """Assign (or re-prioritise) a goal; returns the link and whether it is new."""
    await get(session, AgentConfig, agent_id)
    goal = await get(session, ConversationGoal, goal_id)
    link = await session.scalar(
        select(AgentGoal).where(AgentGoal.agent_id == agent_id, AgentGoal.goal_id == goal_id)
    )
    created = link is None
    if link is None:
        link = AgentGoal(agent_id=agent_id, goal_id=goal_id)
        session.add(link)
    link.priority = data.priority
    link.active = data.active
    await session.flush()
    out = schemas.AgentGoalOut(
        goal_id=goal_id, name=goal.name, priority=link.priority, active=link.active
    )
    return out, created


async def agent_goals(session: AsyncSession, agent_id: int) -> list[schemas.AgentGoalOut]:
    return (await agent_detail(session, agent_id)).goals


async def unassign_goal(session: AsyncSession, agent_id: int, goal_id: int) -> None:
    await get(session, AgentConfig, agent_id)
    link = await session.scalar(
        select(AgentGoal).where(AgentGoal.agent_id == agent_id, AgentGoal.goal_id == goal_id)
    )
    if link is None:
        raise NotFound(f"goal {goal_id} is not assigned to agent {agent_id}")
    await session.delete(link)
    await session.flush()


async def assign_domain(
    session: AsyncSession, agent_id: int, domain_id: int
) -> tuple[schemas.AgentDomainOut, bool]:
    await get(session, AgentConfig, agent_id)
    domain = await get(session, DomainKnowledge, domain_id)
    link = await session.scalar(
        select(AgentDomain).where(
            AgentDomain.agent_id == agent_id, AgentDomain.domain_id == domain_id
        )
    )
    created = link is None
    if link is None:
        session.add(AgentDomain(agent_id=agent_id, domain_id=domain_id))
        await session.flush()
    out = schemas.AgentDomainOut(
        domain_id=domain.id,
        domain_name=domain.domain_name,
        knowledge_type=domain.knowledge_type,  # type: ignore[arg-type]
    )
    return out, created


async def agent_domains(session: AsyncSession, agent_id: int) -> list[schemas.AgentDomainOut]:
    await get(session, AgentConfig, agent_id)
    rows = await session.scalars(
        select(DomainKnowledge)
        .join(AgentDomain, AgentDomain.domain_id == DomainKnowledge.id)
        .where(AgentDomain.agent_id == agent_id)
        .order_by(DomainKnowledge.id)
    )
    return [
        schemas.AgentDomainOut(
            domain_id=d.id,
            domain_name=d.domain_name,
            knowledge_type=d.knowledge_type,  # type: ignore[arg-type]
        )
        for d in rows
    ]


async def unassign_domain(session: AsyncSession, agent_id: int, domain_id: int) -> None:
    await get(session, AgentConfig, agent_id)
    link = await session.scalar(
        select(AgentDomain).where(
            AgentDomain.agent_id == agent_id, AgentDomain.domain_id == domain_id
        )
    )
    if link is None:
        raise NotFound(f"domain {domain_id} is not assigned to agent {agent_id}")
    await session.delete(link)
    await session.flush()
