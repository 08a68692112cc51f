"""outbox delivery: the HTML alternative of a customer's message, and the dispatcher's retries

`notifications.html_body` holds the HTML part rendered with the text one (activities/notifications.py);
older rows keep NULL and go out as text only. `attempts`, `next_attempt_at` and `last_error` let a
message the mail server defers wait its turn without holding up the others; `failed_at` and
`failure_code` (an adapters.mailer.MailFailure) mark one it refused for good (domain/outbox.py). A
partial index on the pending rows keeps taking the oldest one cheap however many were sent.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("html_body", sa.Text(), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("failure_code", sa.String(length=40), nullable=True))
    # the pending messages, taken oldest first one at a time: without it each take would walk past
    # every message ever sent
    pending = sa.text("sent_at IS NULL AND failed_at IS NULL")
    op.create_index(
        "ix_notifications_pending", "notifications", ["id"], postgresql_where=pending, sqlite_where=pending
    )


def downgrade() -> None:
    op.drop_index("ix_notifications_pending", table_name="notifications")
    with op.batch_alter_table("notifications") as batch:
        for column in ("failure_code", "failed_at", "last_error", "next_attempt_at", "attempts", "html_body"):
            batch.drop_column(column)
