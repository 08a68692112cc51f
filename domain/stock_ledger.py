"""The one way stock levels change: a guarded update plus its append-only movement row.

Every change of on_hand or reserved goes through `move`, so the levels always equal the sum of the
movements. The update is conditional (the row only changes if it stays valid), which makes
concurrent reservations safe without read-then-write races; the table's CHECKs are the backstop.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from db import rows_changed
from models.tables import Stock, StockMovement


def ensure_stock_row(session: Session, sku: str, warehouse: str) -> Stock:
    """The stock row of a pair, created empty (nothing on hand, nothing reserved) the first time."""
    stock = session.get(Stock, (sku, warehouse))
    if stock is None:
        stock = Stock(sku=sku, warehouse=warehouse, on_hand=0, reserved=0)
        session.add(stock)
        session.flush()
    return stock


def move(
    session: Session,
    sku: str,
    warehouse: str,
    kind: str,
    *,
    on_hand: int = 0,
    reserved: int = 0,
    order_id: str | None = None,
    purchase_order_id: str | None = None,
    reason: str | None = None,
    request_ref: str | None = None,
) -> bool:
    """Apply the deltas if the result keeps 0 <= reserved <= on_hand; False (nothing written) otherwise."""
    new_on_hand, new_reserved = Stock.on_hand + on_hand, Stock.reserved + reserved
    result = session.execute(
        update(Stock)
        .where(
            Stock.sku == sku,
            Stock.warehouse == warehouse,
            new_on_hand >= 0,
            new_reserved >= 0,
            new_on_hand >= new_reserved,
        )
        .values(on_hand=new_on_hand, reserved=new_reserved)
        .execution_options(synchronize_session=False)
    )
    if rows_changed(result) != 1:
        return False
    session.add(
        StockMovement(
            sku=sku,
            warehouse=warehouse,
            kind=kind,
            on_hand_delta=on_hand,
            reserved_delta=reserved,
            order_id=order_id,
            purchase_order_id=purchase_order_id,
            reason=reason,
            request_ref=request_ref,
        )
    )
    return True
