"""a message the mail server gave up on can be sent again by support (domain/outbox.py `send_again`)

`resent_at` and `resent_by` say when and by whom; the give-up window (`GIVE_UP_AFTER`) counts from
`resent_at` for such a message. Only added, nullable columns: the previous build keeps working.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 03:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("resent_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("resent_by", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("resent_by")
        batch.drop_column("resent_at")
