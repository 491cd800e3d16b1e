"""Reads an agent's definition from the control-plane database for the prompt compiler."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agent.controlplane.errors import NotFound
from agent.controlplane.models import (
    AgentConfig,
    AgentDomain,
    AgentGoal,
    AgentInstruction,
    AgentTemplate,
    ConversationGoal,
    DomainKnowledge,
)
from agent.prompting.compiler import AgentDefinition, Goal, Instruction
from agent.prompting.retrieval import KnowledgeEntry


async def load_agent_definition(session: AsyncSession, agent_id: int) -> AgentDefinition:
    """Agent `agent_id` with its template, instructions, goals and domain knowledge.

    Inactive rows are loaded too (the compiler leaves them out), in id order, so equal
    priorities keep their creation order. Raises NotFound for an unknown agent."""
    agent = await session.get(AgentConfig, agent_id)
    if agent is None:
        raise NotFound(f"agent {agent_id} not found")
    template = await session.get(AgentTemplate, agent.template_id) if agent.template_id else None
    instructions = (
        await session.scalars(
            select(AgentInstruction)
            .where(AgentInstruction.agent_id == agent_id)
            .order_by(AgentInstruction.id)
        )
    ).all()
    goals = (
        await session.execute(
            select(AgentGoal, ConversationGoal)
            .join(ConversationGoal, AgentGoal.goal_id == ConversationGoal.id)
            .where(AgentGoal.agent_id == agent_id)
            .order_by(AgentGoal.id)
        )
    ).all()
    knowledge = (
        await session.scalars(
            select(DomainKnowledge)
            .join(AgentDomain, AgentDomain.domain_id == DomainKnowledge.id)
            .where(AgentDomain.agent_id == agent_id)
            .order_by(DomainKnowledge.id)
        )
    ).all()
    return AgentDefinition(
        name=agent.name,
        template_prompt=(template.base_prompt or "") if template else "",
        description=agent.description,
        instructions=[
            Instruction(i.instruction_type, i.instruction, i.priority, i.active)  # type: ignore[arg-type]
            for i in instructions
        ],
        goals=[
            Goal(
                name=g.name,
                description=g.description,
                success_criteria=dict(g.success_criteria or {}),
                required_data=[str(d) for d in (g.required_data or [])],
                priority=link.priority,
                active=link.active,
            )
            for link, g in goals
        ],
        knowledge=[
            KnowledgeEntry(k.id, k.domain_name, k.knowledge_type, k.content) for k in knowledge
        ],
    )
