"""backfill event reason codes: rows written before 0013 get the code their text names

Migration 0013 added `order_events.reason_code` and left older rows without one. This gives them the
code the workflows now write, read once from the text they wrote then, so the reports read codes only
(domain/reports.py) and never English. A text no rule recognises keeps NULL: the reports count it as
"(no reason code)". The rules are frozen here: they describe the texts of the code before 0013.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENDINGS = ("order_rejected", "order_cancelled")
# (code, event types, LIKE patterns of the detail), tried in this order: the first match wins
RULES: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("cancelled_from_temporal", ("order_cancelled",), ("cancelled from Temporal%",)),
    ("cancelled_by_support", ("order_cancelled",), ("cancelled: %",)),
    ("hold_timeout", ("order_cancelled",), ("on hold for longer than %",)),
    ("backorder_timeout", ("order_cancelled",), ("still out of stock % after backordering",)),
    ("cancelled_at_source", ("order_cancelled",), ("Olist status %", "every line was cancelled by %")),
    ("payment_declined", ENDINGS, ("payment declined%",)),
    ("out_of_stock", (*ENDINGS, "order_backordered"), ("out of stock%",)),
    ("unknown_sku", ENDINGS, ("%unknown SKU%", "%is not active%", "%unknown or not active%")),
    ("price_mismatch", ENDINGS, ("%differs from catalog price%", "%is sold in%")),
    ("invalid_order", ENDINGS, ("invalid order%", "the order total % is above the maximum %")),
    ("invalid_data", ENDINGS, ("the data cannot be stored%",)),
    ("blocklisted_customer", ("order_on_hold",), ("customer e-mail % is on the blocklist%",)),
    ("above_review_limit", ("order_on_hold",), ("order total % is above the review limit %",)),
    ("nothing_delivered", ("order_completed",), ("nothing was delivered",)),
    ("exception_timeout", ("shipment_resolved",), ("% (no choice within %)",)),
]


def upgrade() -> None:
    events = sa.table(
        "order_events",
        sa.column("type", sa.String),
        sa.column("detail", sa.Text),
        sa.column("reason_code", sa.String),
    )
    for code, types, patterns in RULES:
        op.execute(
            events.update()
            .where(events.c.reason_code.is_(None), events.c.type.in_(types))
            .where(sa.or_(*(events.c.detail.like(p) for p in patterns)))
            .values(reason_code=code)
        )


def downgrade() -> None:
    """The codes stay: 0013's downgrade drops the column."""
