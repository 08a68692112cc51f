"""warehouses and carriers as parties: released shipments, labels, parcels, tracking events, claims

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("shipments") as batch:
        batch.add_column(sa.Column("released_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("label_ref", sa.String(length=60), nullable=True))
        batch.add_column(sa.Column("parcels_g", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("replaces", sa.String(length=80), nullable=True))
        batch.create_index("ix_shipments_warehouse_status", ["warehouse", "status"])
    op.create_table(
        "tracking_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tracking_number", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.Column("shipment_id", sa.String(length=80), nullable=False),
        sa.Column("type", sa.String(length=24), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("place", sa.String(length=200), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracking_events")),
        sa.UniqueConstraint("tracking_number", "event_id", name="uq_tracking_events_event"),
    )
    op.create_table(
        "carrier_claims",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("shipment_id", sa.String(length=80), nullable=False),
        sa.Column("tracking_number", sa.String(length=40), nullable=True),
        sa.Column("reason", sa.String(length=24), nullable=False),
        sa.Column("amount", sa.Numeric(12, 2), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_carrier_claims")),
        sa.UniqueConstraint("shipment_id", name="uq_carrier_claims_shipment"),
    )


def downgrade() -> None:
    op.drop_table("carrier_claims")
    op.drop_table("tracking_events")
    with op.batch_alter_table("shipments") as batch:
        batch.drop_index("ix_shipments_warehouse_status")
        batch.drop_column("replaces")
        batch.drop_column("parcels_g")
        batch.drop_column("label_ref")
        batch.drop_column("released_at")
