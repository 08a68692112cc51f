"""historical orders: orders imported from past sales files (no workflow, no money moved)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 20:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL = a live order driven by a workflow; otherwise the source format it was imported from.
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("imported_from", sa.String(length=24), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("imported_from")
