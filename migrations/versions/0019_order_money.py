"""order money: the parts of an order's total (issue 26, docs/orders.md "The order's money")

The finance journal and the report split each payment movement into goods, tax and shipping in its
order's proportions (models/order_money.py); these columns keep them. NULL on orders priced before:
their total is all goods. Only added columns, nullable or defaulted: the previous build keeps working.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AMOUNTS = ("subtotal", "discounts", "shipping", "shipping_tax", "tax")


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        for name in _AMOUNTS:
            batch.add_column(sa.Column(name, sa.Numeric(12, 2), nullable=True))
        batch.add_column(sa.Column("taxes_included", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        for name in ("taxes_included", *reversed(_AMOUNTS)):
            batch.drop_column(name)
