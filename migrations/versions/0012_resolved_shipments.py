"""resolved shipments: a lost or returned parcel whose claim was lodged is `resolved`, not `exception`

Before, the shipments row stayed `exception` after support's reship or refund while the order's view
said `resolved`. A claim is lodged exactly when the case is settled, so it marks the rows to fix.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 11:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "UPDATE shipments SET status = 'resolved' WHERE status = 'exception'"
        " AND id IN (SELECT shipment_id FROM carrier_claims)"
    )


def downgrade() -> None:
    pass  # which rows were `exception` before is not kept; `resolved` is right for them either way
