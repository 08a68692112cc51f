"""Stock levels as support and warehouse staff see them."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy import select

from db import SessionFactory
from models import tables as t


class StockLevel(BaseModel):
    sku: str
    warehouse: str
    on_hand: int
    reserved: int
    available: int


def stock_levels(sessions: SessionFactory, sku: str | None = None) -> list[StockLevel]:
    query = select(t.Stock).order_by(t.Stock.sku, t.Stock.warehouse)
    if sku:
        query = query.where(t.Stock.sku == sku)
    with sessions() as session:
        return [
            StockLevel(
                sku=s.sku,
                warehouse=s.warehouse,
                on_hand=s.on_hand,
                reserved=s.reserved,
                available=s.on_hand - s.reserved,
            )
            for s in session.scalars(query)
        ]
