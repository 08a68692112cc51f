"""Purchase orders with the supplier, reorder-point checks and the release of backorders."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from adapters.supplier import Supplier
from db import SessionFactory
from domain import stock
from models.steps import PurchaseOrderView, RaisePurchaseOrder, ReceivePurchaseOrder, StockKey
from services import replenishment

OFFER_ROUNDS = 5  # attempts at offering received stock to orders that do not answer


class ReplenishmentActivities:
    def __init__(
        self,
        sessions: SessionFactory,
        client: Client,
        supplier: Supplier,
        task_queue: str,
        lead_time: timedelta,
        offer_timeout: timedelta = replenishment.OFFER_TIMEOUT,
    ) -> None:
        self._sessions = sessions
        self._client = client
        self._supplier = supplier
        self._task_queue = task_queue
        self._lead_time = lead_time
        self._offer_timeout = offer_timeout

    @activity.defn
    async def replenish_if_low(self, keys: list[StockKey]) -> list[str]:
        """Start `replenish-<sku>-<warehouse>` for pairs at or below their reorder point (idempotent)."""
        return await replenishment.replenish_if_low(
            self._client, self._sessions, self._task_queue, self._lead_time, keys
        )

    @activity.defn
    async def replenish_for_backorders(self, skus: list[str]) -> list[str]:
        """Start a replenishment for each pair of `skus` left low by backordered demand (idempotent)."""
        return await replenishment.replenish_for_backorders(
            self._client, self._sessions, self._task_queue, self._lead_time, skus
        )

    @activity.defn
    async def release_backorders(self, skus: list[str]) -> list[str]:
        """Offer the received stock to the orders backordered on it; the orders served. An order that
        did not answer in time (busy, its worker restarting) would never hear of this stock: the
        step fails and its retry (with backoff) offers again, up to OFFER_ROUNDS attempts; after
        that the order's backorder timeout still stands."""
        offers = await replenishment.release_backorders(
            self._client, self._sessions, skus, self._offer_timeout
        )
        if offers.unanswered and activity.info().attempt < OFFER_ROUNDS:
            raise ApplicationError(
                f"{len(offers.unanswered)} backordered order(s) did not answer the stock offer "
                f"({', '.join(offers.unanswered)}); offering again"
            )
        return offers.served

    @activity.defn
    def low_stock(self, keys: list[StockKey]) -> list[StockKey]:
        """The pairs at or below their reorder point, counting what backordered orders want from them."""
        return [
            StockKey(sku=low.sku, warehouse=low.warehouse) for low in stock.low_stock(self._sessions, keys)
        ]

    @activity.defn
    def raise_purchase_order(self, request: RaisePurchaseOrder) -> PurchaseOrderView:
        """Raise the purchase order (once: a retry returns the one raised). Its quantity is decided now:
        the pair's `LowStock.order_quantity` when it is low (the reorder quantity plus what backordered
        orders want beyond its stock), else the request's. So a replenishment that orders again after
        a receipt (a new run with the same request) orders what the orders still waiting want; the
        workflow expects and receives the purchase order's quantity.
        """
        if raised := stock.purchase_orders(self._sessions, request.po_id):
            return raised[0]
        quantity = stock.reorder_quantity(self._sessions, request.sku, request.warehouse) or request.quantity
        reference = self._supplier.confirm(request.po_id, request.sku, quantity)
        return stock.raise_purchase_order(
            self._sessions,
            request.po_id,
            request.sku,
            request.warehouse,
            quantity,
            request.expected_at,
            reference,
        )

    @activity.defn
    def receive_purchase_order(self, request: ReceivePurchaseOrder) -> PurchaseOrderView:
        return stock.receive_purchase_order(self._sessions, request.po_id, request.quantity)
