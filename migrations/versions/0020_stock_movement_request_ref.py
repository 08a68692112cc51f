"""stock movements name the door request they came from (models.stock.DoorRequest)

A stock correction or receipt through the HTTP API with an Idempotency-Key records the request on its
movement: when the answer was an error after the ledger write (a 503 from starting a replenishment),
the key is given back and the retry finds the movement and moves nothing again. Only an added, nullable
column: the previous build keeps working.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("stock_movements") as batch:
        batch.add_column(sa.Column("request_ref", sa.String(length=64), nullable=True))
        batch.create_index(batch.f("ix_stock_movements_request_ref"), ["request_ref"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("stock_movements") as batch:
        batch.drop_index(batch.f("ix_stock_movements_request_ref"))
        batch.drop_column("request_ref")
