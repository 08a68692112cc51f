"""event reason codes: refusals, cancellations and parcels in trouble say why as a code

`order_events.reason_code` holds a ReasonCode (models/events.py) next to the event's English text, so
reports group by it instead of parsing the text. Older rows keep NULL: the report falls back to
reading their text (domain/reports.py `reason_of`).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("order_events") as batch:
        batch.add_column(sa.Column("reason_code", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("order_events") as batch:
        batch.drop_column("reason_code")
