"""codec server audit: who decoded or encoded which workflows' payloads

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "codec_audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("operation", sa.String(length=8), nullable=False),
        sa.Column("namespace", sa.String(length=255), nullable=False),
        sa.Column("workflow_ids", sa.String(length=1000), nullable=False),
        sa.Column("payloads", sa.Integer(), nullable=False),
        sa.Column("origin", sa.String(length=255), nullable=False),
        sa.Column("outcome", sa.String(length=200), nullable=False),
        sa.CheckConstraint("via IN ('api_key', 'session')", name=op.f("ck_codec_audit_via_known")),
        sa.CheckConstraint("operation IN ('decode', 'encode')", name=op.f("ck_codec_audit_operation_known")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_codec_audit")),
    )
    op.create_index(op.f("ix_codec_audit_at"), "codec_audit", ["at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_codec_audit_at"), table_name="codec_audit")
    op.drop_table("codec_audit")
