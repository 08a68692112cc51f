"""Stock changes as warehouse staff make them: the ledger change first, then what follows over
Temporal — a replenishment when the pair fell to its reorder point, and arrived stock offered to
backordered orders. Shared by the command line and the HTTP API."""

from __future__ import annotations

import asyncio

from temporalio.client import Client

from config import Settings
from db import SessionFactory
from domain import stock
from models.steps import PurchaseOrderView, StockKey
from models.stock import DoorRequest, StockChange
from services import replenishment
from services.orders import Refused

PO_RECEIPT_TIMEOUT = 60.0


async def adjust(
    client: Client,
    sessions: SessionFactory,
    settings: Settings,
    sku: str,
    warehouse: str,
    delta: int,
    reason: str,
    request: DoorRequest | None = None,
) -> StockChange:
    """A cycle-count correction (raises domain.stock.StockError for an invalid one). `request`: the
    door's, whose retry moves nothing again but does what follows (domain.stock)."""
    level = await asyncio.to_thread(stock.adjust_stock, sessions, sku, warehouse, delta, reason, request)
    return StockChange(
        level=level,
        replenishing=await _replenish_if_low(client, sessions, settings, sku, warehouse),
        backorders_served=(await replenishment.release_backorders(client, sessions, [sku])).served
        if delta > 0
        else [],
    )


async def write_off(
    client: Client,
    sessions: SessionFactory,
    settings: Settings,
    sku: str,
    warehouse: str,
    quantity: int,
    reason: str,
    request: DoorRequest | None = None,
) -> StockChange:
    level = await asyncio.to_thread(
        stock.write_off_stock, sessions, sku, warehouse, quantity, reason, request
    )
    return StockChange(
        level=level, replenishing=await _replenish_if_low(client, sessions, settings, sku, warehouse)
    )


async def receive(
    client: Client,
    sessions: SessionFactory,
    sku: str,
    warehouse: str,
    quantity: int,
    request: DoorRequest | None = None,
) -> StockChange:
    """Goods booked in without a purchase order; they are offered to backorders at once."""
    level = await asyncio.to_thread(stock.receive_stock, sessions, sku, warehouse, quantity, None, request)
    return StockChange(
        level=level,
        backorders_served=(await replenishment.release_backorders(client, sessions, [sku])).served,
    )


async def receive_purchase_order(
    client: Client,
    sessions: SessionFactory,
    po_id: str,
    sku: str,
    warehouse: str,
    quantity: int,
    wait: bool = True,
) -> PurchaseOrderView:
    """Goods for an open purchase order: its replenishment workflow books them in and serves backorders.
    With `wait`, returns once the purchase order shows them received."""
    found = await asyncio.to_thread(stock.purchase_orders, sessions, po_id)
    if not found:
        raise LookupError(f"unknown purchase order {po_id}")
    (po,) = found
    if (po.sku, po.warehouse) != (sku, warehouse):
        raise stock.StockError(f"purchase order {po.id} is for {po.sku} in {po.warehouse}")
    if po.status != "open":
        raise Refused(f"purchase order {po.id} is already {po.status}")
    if quantity <= 0:
        raise stock.StockError("a receipt needs a positive quantity")
    await replenishment.goods_received(client, po.sku, po.warehouse, quantity)
    if not wait:
        return po
    # The signal is asynchronous: the receipt is done when the purchase order row says so.
    deadline = asyncio.get_running_loop().time() + PO_RECEIPT_TIMEOUT
    while (po := (await asyncio.to_thread(stock.purchase_orders, sessions, po_id))[0]).status == "open":
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"purchase order {po.id} was not booked in within 60 s; is a worker running?")
        await asyncio.sleep(0.2)
    return po


async def _replenish_if_low(
    client: Client, sessions: SessionFactory, settings: Settings, sku: str, warehouse: str
) -> list[str]:
    return await replenishment.replenish_if_low(
        client,
        sessions,
        settings.task_queue,
        settings.supplier_lead_time,
        [StockKey(sku=sku, warehouse=warehouse)],
    )
