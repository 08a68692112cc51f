"""ReplenishmentWorkflow (`replenish-<sku>-<warehouse>`): raise a purchase order, await the goods,
receive them, close the order, and offer the stock to backorders; then, while the pair is still at or
below its reorder point counting the orders still backordered, order again (a new run)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.replenishment import ReplenishmentActivities
    from models.steps import (
        PurchaseOrderView,
        RaisePurchaseOrder,
        ReceivePurchaseOrder,
        ReplenishRequest,
        StockKey,
    )
    from models.workflow_names import REPLENISHMENT_WORKFLOW, ReplenishmentSignal
    from workflows.options import RETRY_FOREVER, STEP_TIMEOUT

RELEASE_TIMEOUT = timedelta(minutes=10)  # offers stock to every waiting order, one after another


@workflow.defn(name=REPLENISHMENT_WORKFLOW)
class ReplenishmentWorkflow:
    @workflow.init
    def __init__(self, request: ReplenishRequest) -> None:
        self._received: int | None = None
        self._po: PurchaseOrderView | None = None

    @workflow.run
    async def run(self, request: ReplenishRequest) -> PurchaseOrderView:
        run = workflow.info().run_id[-12:]
        # no sku in it: a sku (up to 64 characters) would make it too long for purchase_orders.id (80)
        # and stock_movements.purchase_order_id (64); the row names its sku anyway
        po_id = f"PO-{request.warehouse}-{run}"
        self._po = await self._step(
            ReplenishmentActivities.raise_purchase_order,
            RaisePurchaseOrder(
                po_id=po_id,
                sku=request.sku,
                warehouse=request.warehouse,
                quantity=request.quantity,
                expected_at=workflow.now() + request.lead_time,
            ),
            f"order {request.quantity} x {request.sku} for {request.warehouse}",
        )
        # the purchase order's own quantity, not the request's: raise_purchase_order decides it (backordered
        # orders count: domain.stock.LowStock.order_quantity), so a run ordering again after a receipt,
        # as a new run with the same request, orders what the orders still waiting want
        quantity = self._po.quantity
        workflow.set_current_details(
            f"**{po_id}** open: {quantity} x {request.sku}, "
            f"expected {self._po.expected_at:%Y-%m-%d %H:%M} UTC"
        )
        try:
            await workflow.wait_condition(
                lambda: self._received is not None,
                timeout=request.lead_time,
                timeout_summary="supplier lead time",
            )
        except TimeoutError:
            self._received = quantity  # the supplier delivers on schedule
        self._po = await self._step(
            ReplenishmentActivities.receive_purchase_order,
            ReceivePurchaseOrder(po_id=po_id, quantity=self._received or quantity),
            f"receive {po_id}",
        )
        workflow.set_current_details(f"**{po_id}** received: {self._po.received_quantity} x {request.sku}")
        await workflow.execute_activity_method(
            ReplenishmentActivities.release_backorders,
            [request.sku],
            start_to_close_timeout=RELEASE_TIMEOUT,
            retry_policy=RETRY_FOREVER,
            summary=f"offer {request.sku} to backorders",
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        still_low = await self._step(
            ReplenishmentActivities.low_stock,
            [StockKey(sku=request.sku, warehouse=request.warehouse)],
            "check reorder point",
        )
        # backorders took it all, or orders still wait for more than is left (the check counts them): order
        # again, as the same (single) replenishment of this pair
        if still_low:
            workflow.continue_as_new(request)
        return self._po

    async def _step(self, activity: Callable[..., Any], arg: Any, summary: str) -> Any:
        return await workflow.execute_activity_method(
            activity, arg, start_to_close_timeout=STEP_TIMEOUT, retry_policy=RETRY_FOREVER, summary=summary
        )

    @workflow.signal(name=ReplenishmentSignal.goods_received)
    def goods_received(self, quantity: int) -> None:
        """The warehouse booked the delivery in (`stock receive ... --po ID`)."""
        if self._received is None and quantity > 0:
            self._received = quantity

    @workflow.query
    def purchase_order(self) -> PurchaseOrderView | None:
        return self._po
