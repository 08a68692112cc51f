"""Replenishment and backorders over Temporal: start `replenish-<sku>-<warehouse>` when stock runs low,
and offer arrived stock to backordered orders, first come first served."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

from db import SessionFactory
from domain.stock import low_stock, stock_keys
from models import tables as t
from models.steps import ReplenishRequest, StockKey
from models.workflow_names import (
    REPLENISHMENT_WORKFLOW,
    OrderUpdate,
    ReplenishmentSignal,
    order_workflow_id,
    replenishment_workflow_id,
)
from services.waiting import within

log = logging.getLogger(__name__)
OFFER_TIMEOUT = timedelta(seconds=60)


async def replenish_if_low(
    client: Client, sessions: SessionFactory, task_queue: str, lead_time: timedelta, keys: list[StockKey]
) -> list[str]:
    """Start a replenishment for every pair at or below its reorder point, counting the units that
    backordered orders want from it (`domain.stock.low_stock_in`), for `LowStock.order_quantity`;
    at most one runs per pair (one that runs orders again after its receipt while orders still wait)."""
    started = []
    for low in await asyncio.to_thread(low_stock, sessions, keys):
        waiting = f", {low.backordered} backordered" if low.backordered else ""
        handle = await client.start_workflow(
            REPLENISHMENT_WORKFLOW,
            ReplenishRequest(
                sku=low.sku, warehouse=low.warehouse, quantity=low.order_quantity, lead_time=lead_time
            ),
            id=replenishment_workflow_id(low.sku, low.warehouse),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,  # one open replenishment per pair
            static_summary=f"replenish {low.sku} in {low.warehouse}: {low.available} available{waiting}, "
            f"reorder point {low.reorder_point}",
        )
        started.append(handle.id)
    return started


async def replenish_for_backorders(
    client: Client, sessions: SessionFactory, task_queue: str, lead_time: timedelta, skus: list[str]
) -> list[str]:
    """A replenishment for every pair of `skus` that backordered demand leaves low (counted by
    `low_stock`): an order that has just become backordered asks, so that it never waits with nothing
    on order (the purchase order it saw may have been received and offered before it was waiting)."""
    keys = await asyncio.to_thread(stock_keys, sessions, skus)
    return await replenish_if_low(client, sessions, task_queue, lead_time, keys)


@dataclass(frozen=True)
class Offers:
    """What offering stock to backordered orders came to."""

    served: list[str]  # orders that got their stock
    unanswered: list[str]  # busy or stuck orders that did not answer in time: offer to them again


async def release_backorders(
    client: Client, sessions: SessionFactory, skus: list[str], timeout: timedelta = OFFER_TIMEOUT
) -> Offers:
    """Offer stock to backordered orders wanting these SKUs, one at a time in placement order.

    Each order tries to reserve in full before the next is asked, so earlier orders are served first;
    one that still cannot be filled keeps waiting without blocking later, smaller ones. An order that
    does not answer within `timeout` is passed over (it must not hold up the queue behind it) and
    named in `unanswered`: the stock stays on the shelf, and only an offer made again reaches it.
    """
    served, unanswered = [], []
    for order_id in await asyncio.to_thread(_backordered, sessions, skus):
        update = client.get_workflow_handle(order_workflow_id(order_id)).execute_update(
            OrderUpdate.retry_reservation, result_type=bool
        )
        try:
            reserved = await within(update, timeout.total_seconds())
        except (WorkflowUpdateFailedError, RPCError) as exc:  # no longer backordered: nothing to offer
            log.info("order %s not offered stock: %s", order_id, exc)
            continue
        except TimeoutError:
            log.warning("order %s did not answer the stock offer within %s", order_id, timeout)
            unanswered.append(order_id)
            continue
        if reserved:
            served.append(order_id)
    return Offers(served, unanswered)


def _backordered(sessions: SessionFactory, skus: list[str]) -> list[str]:
    with sessions() as session:
        return list(
            session.scalars(
                select(t.Order.id)
                .where(
                    t.Order.status == "backordered",
                    t.Order.id.in_(select(t.OrderLine.order_id).where(t.OrderLine.sku.in_(skus))),
                )
                .order_by(t.Order.placed_at, t.Order.id)
            )
        )


async def goods_received(client: Client, sku: str, warehouse: str, quantity: int) -> None:
    """Tell the replenishment of this pair that its purchase order's goods arrived."""
    await client.get_workflow_handle(replenishment_workflow_id(sku, warehouse)).signal(
        ReplenishmentSignal.goods_received, quantity
    )
