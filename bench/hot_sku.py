"""The hot SKU: many orders racing for the last units of one SKU in one warehouse, placed at once.

Every order asks for one unit; the stock covers only some of them. Exactly that many must be confirmed,
the rest settle however the policy says (backordered by default), and the ledger must hold: nothing
oversold, no level negative, `domain.stock.check_stock` clean.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from temporalio.client import Client

from bench.orders_run import SETTLED_FOR_BENCH, wait_settled, wait_until
from config import Settings
from db import SessionFactory
from domain.stock import check_stock
from models import tables as t
from models.catalog import CatalogFile, ProductRow, StockRow
from models.orders import Address, Channel, CustomerIn, LineIn, OrderInput, PaymentIn
from services.orders import place_order, policy_from

HOT_SKU = "BENCH-HOT-1"
HOT_WAREHOUSE = "SP"


def with_hot_sku(catalog: CatalogFile, units: int) -> CatalogFile:
    """The catalog plus the hot SKU, `units` of it in one warehouse."""
    product = ProductRow(
        sku=HOT_SKU, name="Bench hot item", price=Decimal("10.00"), currency="BRL", weight_g=200
    )
    return catalog.model_copy(
        update={
            "products": [*catalog.products, product],
            "stock": [*catalog.stock, StockRow(sku=HOT_SKU, warehouse=HOT_WAREHOUSE, on_hand=units)],
        }
    )


def hot_orders(count: int, prefix: str) -> list[OrderInput]:
    """`count` orders of one unit of the hot SKU, each from its own customer."""
    return [
        OrderInput(
            order_id=f"{prefix}-{n:04d}",
            channel=Channel.web,
            customer=CustomerIn(id=f"hot-{n:04d}", name=f"Hot buyer {n}", email=f"hot{n}@example.com"),
            shipping_address=Address(
                name=f"Hot buyer {n}",
                line1="Rua Exemplo 1",
                city="sao paulo",
                postal_code="01001-000",
                country="BR",
            ),
            lines=[LineIn(sku=HOT_SKU, quantity=1)],
            currency="BRL",
            payment=PaymentIn(token="tok_visa"),
        )
        for n in range(count)
    ]


@dataclass(frozen=True)
class HotSkuRun:
    orders: int
    stock: int
    seconds: float  # placed at once -> every order settled
    confirmed: int
    settled: dict[str, int]  # first settling event -> orders
    reservations_per_s: float  # confirmed orders / seconds
    oversold: int  # units confirmed beyond the stock (must be 0)
    on_hand: int
    reserved: int
    ledger_problems: list[str]


def stock_level(sessions: SessionFactory) -> tuple[int, int]:
    with sessions() as session:
        row = session.execute(
            select(t.Stock.on_hand, t.Stock.reserved).where(
                t.Stock.sku == HOT_SKU, t.Stock.warehouse == HOT_WAREHOUSE
            )
        ).one()
    return int(row.on_hand), int(row.reserved)


async def run_hot_sku(
    client: Client, settings: Settings, sessions: SessionFactory, orders: int, stock: int, timeout: float
) -> HotSkuRun:
    """Place the hot orders at once and wait until every one has settled (its first settling event)."""
    policy = policy_from(settings)
    batch = hot_orders(orders, f"HOT-{time.time_ns() % 10**8:08d}")
    started = time.perf_counter()
    await asyncio.gather(*(place_order(client, settings, o, policy) for o in batch))
    found = await wait_settled(sessions, [o.order_id for o in batch if o.order_id], started + timeout)
    seconds = time.perf_counter() - started
    settled = dict(Counter(s.event for s in found.values()))
    confirmed = settled.get("order_confirmed", 0)
    # not timed: the confirmed ones go on to ship, so the stock read below is final and no sandbox
    # warehouse is still reporting when the benchmark stops the worker
    shipping = [order_id for order_id, s in found.items() if s.event == "order_confirmed"]
    await wait_until(sessions, shipping, SETTLED_FOR_BENCH, started + timeout)
    on_hand, reserved = stock_level(sessions)
    return HotSkuRun(
        orders=orders,
        stock=stock,
        seconds=round(seconds, 3),
        confirmed=confirmed,
        settled=settled,
        reservations_per_s=round(confirmed / seconds, 2) if seconds else 0.0,
        oversold=max(0, confirmed - stock),
        on_hand=on_hand,
        reserved=reserved,
        ledger_problems=check_stock(sessions),
    )
