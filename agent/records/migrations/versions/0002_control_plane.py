"""Control plane: agent templates, agents, goals, instructions, domains, voices, API keys.

Revision ID: 0002_control_plane
Revises: 0001_call_records
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002_control_plane"
down_revision: str | None = "0001_call_records"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types (a migration must not change when models.py does).
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer(), autoincrement=True, nullable=False)


def upgrade() -> None:
    op.create_table(
        "agent_templates",
        _id(),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("base_prompt", sa.Text(), nullable=True),
        sa.Column("voice_config", JSON_DOC, nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_agent_templates"),
        sa.UniqueConstraint("name", name="uq_agent_templates_name"),
    )
    op.create_table(
        "agent_configs",
        _id(),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("template_id", sa.Integer(), nullable=True),
        sa.Column("voice_id", sa.String(64), nullable=True),
        sa.Column("custom_settings", JSON_DOC, nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_agent_configs"),
        sa.UniqueConstraint("name", name="uq_agent_configs_name"),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["agent_templates.id"],
            name="fk_agent_configs_template_id_agent_templates",
            ondelete="RESTRICT",
        ),
    )
    op.create_index("ix_agent_configs_template_id", "agent_configs", ["template_id"])
    op.create_table(
        "conversation_goals",
        _id(),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("success_criteria", JSON_DOC, nullable=False),
        sa.Column("required_data", JSON_DOC, nullable=False),
        sa.Column("completion_webhook", sa.Text(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_conversation_goals"),
        sa.UniqueConstraint("name", name="uq_conversation_goals_name"),
    )
    op.create_table(
        "agent_instructions",
        _id(),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("instruction_type", sa.String(8), nullable=False),
        sa.Column("instruction", sa.Text(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_agent_instructions"),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agent_configs.id"],
            name="fk_agent_instructions_agent_id_agent_configs",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint("instruction_type IN ('do', 'dont')", name="ck_agent_instructions_type"),
    )
    op.create_index("ix_agent_instructions_agent_id", "agent_instructions", ["agent_id"])
    op.create_table(
        "domain_knowledge",
        _id(),
        sa.Column("domain_name", sa.String(255), nullable=False),
        sa.Column("knowledge_type", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("metadata", JSON_DOC, nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_domain_knowledge"),
        sa.CheckConstraint(
            "knowledge_type IN ('fact', 'process', 'policy')", name="ck_domain_knowledge_type"
        ),
    )
    op.create_index("ix_domain_knowledge_domain_name", "domain_knowledge", ["domain_name"])
    op.create_table(
        "agent_goals",
        _id(),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("goal_id", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_agent_goals"),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agent_configs.id"],
            name="fk_agent_goals_agent_id_agent_configs",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["goal_id"],
            ["conversation_goals.id"],
            name="fk_agent_goals_goal_id_conversation_goals",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("agent_id", "goal_id", name="uq_agent_goals_agent_id_goal_id"),
    )
    op.create_index("ix_agent_goals_goal_id", "agent_goals", ["goal_id"])
    op.create_table(
        "agent_domains",
        _id(),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_agent_domains"),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agent_configs.id"],
            name="fk_agent_domains_agent_id_agent_configs",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domain_knowledge.id"],
            name="fk_agent_domains_domain_id_domain_knowledge",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("agent_id", "domain_id", name="uq_agent_domains_agent_id_domain_id"),
    )
    op.create_index("ix_agent_domains_domain_id", "agent_domains", ["domain_id"])
    op.create_table(
        "voices",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("engine", sa.String(32), nullable=False),
        sa.Column("conds_path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_voices"),
    )
    op.create_table(
        "api_keys",
        _id(),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("key_hash", sa.String(255), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("last_used_at", _ts(), nullable=True),
        sa.Column("revoked_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("prefix", name="uq_api_keys_prefix"),
        sa.CheckConstraint("scope IN ('admin', 'read')", name="ck_api_keys_scope"),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("voices")
    op.drop_index("ix_agent_domains_domain_id", table_name="agent_domains")
    op.drop_table("agent_domains")
    op.drop_index("ix_agent_goals_goal_id", table_name="agent_goals")
    op.drop_table("agent_goals")
    op.drop_index("ix_domain_knowledge_domain_name", table_name="domain_knowledge")
    op.drop_table("domain_knowledge")
    op.drop_index("ix_agent_instructions_agent_id", table_name="agent_instructions")
    op.drop_table("agent_instructions")
    op.drop_table("conversation_goals")
    op.drop_index("ix_agent_configs_template_id", table_name="agent_configs")
    op.drop_table("agent_configs")
    op.drop_table("agent_templates")
