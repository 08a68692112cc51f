"""cycle counts asked for by short picks; carrier scans get event types of their own

- `stock.count_requested_at` and `stock.count_reason`: a pick that found fewer units than the books
  promised asks for a count of that shelf (activities/inventory.py `record_pick`); the next adjustment
  of the pair clears it.
- Carrier scans that leave a parcel's status as it was (in transit, out for delivery, a failed delivery
  attempt short of the last, held up) were written as the event of the shipment's status, mostly
  `shipment_shipped` ("S1: in_transit at Leipzig hub"); they now have their own types (`parcel_*`,
  models/events.py). Older rows get them from their text: the rules are frozen here, and describe the
  text the workflows wrote before (`<shipment>: <carrier event>[ at <place>]...`).
- A lost parcel's resolution said who chose inside a second pair of brackets, "S1: refunded 89.90 EUR
  (chosen (by cli:ann))"; the workflows now write "(chosen by cli:ann)", and older rows are reworded.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 21:00:00
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (new type, carrier event, the types it was written as): scans that never change a parcel's status,
# whatever status it had; a failed attempt changed it on the last attempt, written `shipment_exception`
RULES: list[tuple[str, str, tuple[str, ...]]] = [
    ("parcel_in_transit", "in_transit", ("shipment_shipped", "shipment_exception")),
    ("parcel_out_for_delivery", "out_for_delivery", ("shipment_shipped", "shipment_exception")),
    ("parcel_held_up", "exception", ("shipment_shipped", "shipment_exception")),
    ("parcel_delivery_failed", "delivery_failed", ("shipment_shipped",)),
]


CHOSEN_BY = re.compile(r"\(chosen \(by ([^()]*)\)\)")


def upgrade() -> None:
    with op.batch_alter_table("stock") as batch:
        batch.add_column(sa.Column("count_requested_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("count_reason", sa.String(length=200), nullable=True))
    events = sa.table("order_events", sa.column("type", sa.String), sa.column("detail", sa.Text))
    for new_type, scan, old_types in RULES:
        op.execute(
            events.update()
            .where(events.c.type.in_(old_types))
            .where(sa.or_(events.c.detail.like(f"%: {scan}"), events.c.detail.like(f"%: {scan} %")))
            .values(type=new_type)
        )
    rows = sa.table("order_events", sa.column("id", sa.Integer), sa.column("detail", sa.Text))
    bind = op.get_bind()
    doubled = bind.execute(sa.select(rows.c.id, rows.c.detail).where(rows.c.detail.like("%(chosen (by %))%")))
    for row_id, detail in doubled.all():
        worded = CHOSEN_BY.sub(r"(chosen by \1)", detail)
        bind.execute(rows.update().where(rows.c.id == row_id).values(detail=worded))


def downgrade() -> None:
    with op.batch_alter_table("stock") as batch:
        batch.drop_column("count_reason")
        batch.drop_column("count_requested_at")
