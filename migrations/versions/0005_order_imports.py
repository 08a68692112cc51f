"""order imports

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "order_imports",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('running', 'done')", name=op.f("ck_order_imports_status_known")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_imports")),
    )
    op.create_index(op.f("ix_order_imports_status"), "order_imports", ["status"], unique=False)
    op.create_table(
        "order_import_outcomes",
        sa.Column("import_id", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=True),
        sa.Column("rows", sa.String(length=200), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("order_json", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('pending', 'accepted', 'duplicate', 'refused')",
            name=op.f("ck_order_import_outcomes_outcome_known"),
        ),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["order_imports.id"],
            name=op.f("fk_order_import_outcomes_import_id_order_imports"),
        ),
        sa.PrimaryKeyConstraint("import_id", "seq", name=op.f("pk_order_import_outcomes")),
    )
    op.create_index(
        "ix_order_import_outcomes_import_id_outcome",
        "order_import_outcomes",
        ["import_id", "outcome"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_order_import_outcomes_import_id_outcome", table_name="order_import_outcomes")
    op.drop_table("order_import_outcomes")
    op.drop_index(op.f("ix_order_imports_status"), table_name="order_imports")
    op.drop_table("order_imports")
