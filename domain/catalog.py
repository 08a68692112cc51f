"""Loading the catalog file: idempotent upserts; stock levels change through the stock ledger."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from db import SessionFactory
from domain.stock_ledger import ensure_stock_row, move
from models import tables as t
from models.catalog import CatalogFile


class CatalogError(ValueError):
    pass


@dataclass
class LoadSummary:
    warehouses: int = 0
    products: int = 0
    stock_rows: int = 0
    stock_adjusted: int = 0


def load_catalog(sessions: SessionFactory, catalog: CatalogFile) -> LoadSummary:
    """Upsert warehouses and products and set stock levels; all or nothing."""
    summary = LoadSummary()
    with sessions.begin() as session:
        for w in catalog.warehouses:
            row = session.get(t.Warehouse, w.code) or t.Warehouse(code=w.code)
            row.name, row.priority = w.name, w.priority
            session.add(row)
            summary.warehouses += 1
        for p in catalog.products:
            product = session.get(t.Product, p.sku) or t.Product(sku=p.sku)
            product.name, product.price, product.currency, product.weight_g, product.active = (
                p.name,
                p.price,
                p.currency,
                p.weight_g,
                p.active,
            )
            session.add(product)
            summary.products += 1
        session.flush()
        for s in catalog.stock:
            summary.stock_rows += 1
            if _set_level(session, s.sku, s.warehouse, s.on_hand, s.reorder_point, s.reorder_qty):
                summary.stock_adjusted += 1
    return summary


def _set_level(
    session: Session,
    sku: str,
    warehouse: str,
    on_hand: int,
    reorder_point: int | None,
    reorder_qty: int | None,
) -> bool:
    if session.get(t.Product, sku) is None:
        raise CatalogError(f"stock row names unknown SKU {sku}")
    if session.get(t.Warehouse, warehouse) is None:
        raise CatalogError(f"stock row names unknown warehouse {warehouse}")
    stock = ensure_stock_row(session, sku, warehouse)
    stock.reorder_point, stock.reorder_qty = reorder_point, reorder_qty
    session.flush()
    delta = on_hand - stock.on_hand
    if delta == 0:
        return False
    if not move(session, sku, warehouse, "adjust", on_hand=delta, reason="catalog load"):
        raise CatalogError(
            f"{sku} in {warehouse}: on_hand {on_hand} is below the {stock.reserved} units reserved"
        )
    return True
