"""The ledger's first schema: sessions and responses.

Revision ID: 0001
Revises:
Create Date: 2026-05-20

Written out in full rather than built from ``realtalk.ledger.schema``, so that later changes to
the schema module never change what this revision did. Money is NUMERIC(18, 9) on PostgreSQL and
an integer of nano-dollars on SQLite (see ``schema.Money``).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TOKENS = (
    "text_in",
    "text_cached",
    "audio_in",
    "audio_cached",
    "image_in",
    "image_cached",
    "text_out",
    "audio_out",
)
_MONEY = (
    "cost_usd",
    "text_in_usd",
    "text_cached_usd",
    "text_out_usd",
    "audio_in_usd",
    "audio_cached_usd",
    "audio_out_usd",
    "image_in_usd",
    "image_cached_usd",
    "tools_usd",
    "unheard_audio_usd",
)


def _money() -> sa.Numeric[Decimal]:
    return sa.Numeric(18, 9).with_variant(sa.BigInteger(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("session_id", sa.String(128), primary_key=True),
        sa.Column("user", sa.String(256), nullable=True),
        sa.Column("deployment", sa.String(256), nullable=False),
        sa.Column("pricing_model", sa.String(128), nullable=False),
        sa.Column("transport", sa.String(32), nullable=True),
        sa.Column("client", sa.String(32), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(256), nullable=True),
    )
    op.create_index("ix_sessions_started_at", "sessions", ["started_at"])
    op.create_index("ix_sessions_user_started_at", "sessions", ["user", "started_at"])

    op.create_table(
        "responses",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.String(128), sa.ForeignKey("sessions.session_id"), nullable=False),
        sa.Column("response_id", sa.String(128), nullable=True),
        sa.Column("user", sa.String(256), nullable=True),
        sa.Column("deployment", sa.String(256), nullable=False),
        sa.Column("pricing_model", sa.String(128), nullable=False),
        sa.Column("status", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in _TOKENS),
        *(sa.Column(name, _money(), nullable=False) for name in _MONEY),
        sa.Column("audio_generated_ms", sa.Integer(), nullable=False),
        sa.Column("audio_heard_ms", sa.Integer(), nullable=True),
        sa.Column("voice_to_voice_ms", sa.Float(), nullable=True),
    )
    op.create_index("ix_responses_session_id", "responses", ["session_id"])
    op.create_index("ix_responses_created_at", "responses", ["created_at"])
    op.create_index("ix_responses_user_created_at", "responses", ["user", "created_at"])
    op.create_index("ix_responses_deployment_created_at", "responses", ["deployment", "created_at"])
    op.create_index(
        "uq_responses_session_response",
        "responses",
        ["session_id", "response_id"],
        unique=True,
        sqlite_where=sa.text("response_id IS NOT NULL"),
        postgresql_where=sa.text("response_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_table("responses")
    op.drop_table("sessions")
