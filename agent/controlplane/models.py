"""SQLAlchemy tables of the control plane: seed 004's agent schema, voices, API keys.

They live on the records' `Base`, so one metadata, one Alembic history (0002) and
one database hold calls and agent definitions alike. Enumerations are strings
with CHECK constraints, as in the records tables. Link tables cascade on delete:
removing an agent or a goal removes its assignments, never the other side.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from agent.records.models import Base, JSONDoc, UTCDateTime

INSTRUCTION_TYPES: tuple[str, ...] = ("do", "dont")
KNOWLEDGE_TYPES: tuple[str, ...] = ("fact", "process", "policy")
API_KEY_SCOPES: tuple[str, ...] = ("admin", "read")


def _now() -> datetime:
    return datetime.now(UTC)


class AgentTemplate(Base):
    __tablename__ = "agent_templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    base_prompt: Mapped[str | None] = mapped_column(Text)
    voice_config: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)


class AgentConfig(Base):
    __tablename__ = "agent_configs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    # RESTRICT: a template still used by agents cannot vanish from under them.
    template_id: Mapped[int | None] = mapped_column(
        ForeignKey("agent_templates.id", ondelete="RESTRICT"), index=True
    )
    # Not a foreign key: a voice may live only in the voice store (models.voices) or ship
    # with an engine; the API checks the id's format, the TTS checks that it exists.
    voice_id: Mapped[str | None] = mapped_column(String(64))
    custom_settings: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now, onupdate=_now)


class ConversationGoal(Base):
    __tablename__ = "conversation_goals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    success_criteria: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)
    required_data: Mapped[list[Any]] = mapped_column(JSONDoc, default=list)
    completion_webhook: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)


class AgentInstruction(Base):
    __tablename__ = "agent_instructions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agent_id: Mapped[int] = mapped_column(
        ForeignKey("agent_configs.id", ondelete="CASCADE"), index=True
    )
    instruction_type: Mapped[str] = mapped_column(String(8))
    instruction: Mapped[str] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    __table_args__ = (CheckConstraint("instruction_type IN ('do', 'dont')", name="type"),)


class DomainKnowledge(Base):
    __tablename__ = "domain_knowledge"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    domain_name: Mapped[str] = mapped_column(String(255), index=True)
    knowledge_type: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    # `metadata` is reserved on declarative classes; the column keeps the seed's name.
    extra: Mapped[dict[str, Any]] = mapped_column("metadata", JSONDoc, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)

    __table_args__ = (
        CheckConstraint("knowledge_type IN ('fact', 'process', 'policy')", name="type"),
    )


class AgentGoal(Base):
    __tablename__ = "agent_goals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agent_configs.id", ondelete="CASCADE"))
    goal_id: Mapped[int] = mapped_column(
        ForeignKey("conversation_goals.id", ondelete="CASCADE"), index=True
    )
    priority: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    __table_args__ = (
        UniqueConstraint("agent_id", "goal_id", name="uq_agent_goals_agent_id_goal_id"),
    )


class AgentDomain(Base):
    __tablename__ = "agent_domains"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agent_configs.id", ondelete="CASCADE"))
    domain_id: Mapped[int] = mapped_column(
        ForeignKey("domain_knowledge.id", ondelete="CASCADE"), index=True
    )

    __table_args__ = (
        UniqueConstraint("agent_id", "domain_id", name="uq_agent_domains_agent_id_domain_id"),
    )


class Voice(Base):
    __tablename__ = "voices"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    engine: Mapped[str] = mapped_column(String(32), default="chatterbox")
    conds_path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    scope: Mapped[str] = mapped_column(String(8))
    # The key's public part, to find the row without hashing against every key.
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    # scrypt of the whole key with its parameters and salt; the key itself is never stored.
    key_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (CheckConstraint("scope IN ('admin', 'read')", name="scope"),)
