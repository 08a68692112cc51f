"""reorder recommendations: the demand forecast's reorder point and quantity per sku and warehouse

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27 20:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reorder_recommendations",
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("warehouse", sa.String(length=16), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("model", sa.String(length=32), nullable=False),
        sa.Column("mae", sa.Float(), nullable=True),
        sa.Column("naive_mae", sa.Float(), nullable=True),
        sa.Column("moving_average_mae", sa.Float(), nullable=True),
        sa.Column("mean_daily_demand", sa.Float(), nullable=False),
        sa.Column("demand_std", sa.Float(), nullable=False),
        sa.Column("lead_time_days", sa.Integer(), nullable=False),
        sa.Column("service_level", sa.Float(), nullable=False),
        sa.Column("reorder_point", sa.Integer(), nullable=False),
        sa.Column("reorder_qty", sa.Integer(), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("reorder_point >= 0", name=op.f("ck_reorder_recommendations_point_not_negative")),
        sa.CheckConstraint("reorder_qty >= 0", name=op.f("ck_reorder_recommendations_qty_not_negative")),
        sa.PrimaryKeyConstraint("sku", "warehouse", name=op.f("pk_reorder_recommendations")),
    )


def downgrade() -> None:
    op.drop_table("reorder_recommendations")
