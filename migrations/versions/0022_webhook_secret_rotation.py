"""a webhook subscription's secret can be rotated (domain/webhook_subscriptions.py `rotate_secret`)

The secret before the last rotation keeps signing next to the new one until `previous_secret_until`, so
a receiver can switch without losing a message (Standard Webhooks: several space-separated signatures).
Only added, nullable columns: the previous build keeps working.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 03:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.add_column(sa.Column("previous_secret", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("previous_secret_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.drop_column("previous_secret_until")
        batch.drop_column("previous_secret")
