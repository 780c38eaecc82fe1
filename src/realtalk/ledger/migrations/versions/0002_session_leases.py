"""Open sessions, for the per-user limit on concurrent sessions shared by every gateway replica.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04

One row per open session (``realtalk.ledger.leases``): who holds it (which gateway process) and
until when, renewed while the session runs. Nothing in the existing tables changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "session_leases",
        sa.Column("session_id", sa.String(128), primary_key=True),
        sa.Column("user", sa.String(256), nullable=False),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_session_leases_user_expires_at", "session_leases", ["user", "expires_at"])
    op.create_index("ix_session_leases_holder", "session_leases", ["holder"])


def downgrade() -> None:
    op.drop_table("session_leases")
