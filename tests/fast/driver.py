"""How the fast tier's tests drive orders: through the client layer (services/), as the doors do."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from config import Settings
from models.fulfilment import CarrierEvent, PickedLine, ReportOutcome, ResolveRequest, WarehouseReport
from models.orders import (
    CancelLine,
    GoodwillIn,
    GoodwillRefundView,
    OrderInput,
    OrderPolicy,
    OrderView,
    ReturnIn,
    ReturnReceipt,
    ReturnView,
    ShipmentStatus,
    ShipmentView,
)
from models.shipping import CarrierEventType, Resolution
from models.workflow_names import OrderUpdate
from services import fulfilment as fulfilment_service
from services import orders as orders_service
from tests import helpers
from tests.fast.fakes import World
from tests.helpers import order_doc

T = TypeVar("T")
WAIT = 20.0  # seconds of real time any one condition may take


def new_sku(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6].upper()}"


class Shop:
    """One test's view of the system: place orders, act as support, warehouse and carrier, and wait
    for what a user would see. Every wait is on a condition (a query of the order, an update's answer,
    the run's result); time only moves when a test skips it."""

    def __init__(self, env: WorkflowEnvironment, world: World, task_queue: str) -> None:
        self.env, self.world, self.client = env, world, env.client
        # production settings (OrderPolicy defaults come from them), on this tier's task queue
        self.settings = Settings(task_queue=task_queue)
        self.policy: OrderPolicy = orders_service.policy_from(self.settings)

    # ---- placing and looking ----

    async def place(
        self, lines: list[tuple[str, int]], policy: dict[str, Any] | None = None, **doc: Any
    ) -> str:
        order = OrderInput.model_validate(order_doc(lines, **doc))
        policy_ = self.policy.model_copy(update=policy or {})
        placed = await orders_service.place_order(self.client, self.settings, order, policy_)
        return placed.order_id

    def handle(self, order_id: str) -> WorkflowHandle:
        return orders_service.handle(self.client, order_id)

    async def view(self, order_id: str) -> OrderView:
        return await orders_service.order_view(self.client, order_id)

    async def settled(self, order_id: str) -> OrderView:
        return await orders_service.wait_until_settled(self.client, order_id, timeout=WAIT)

    async def until(self, order_id: str, check: Callable[[OrderView], bool], what: str = "") -> OrderView:
        return await eventually(lambda: self.view(order_id), check, what or "condition")

    async def status(self, order_id: str, *statuses: str) -> OrderView:
        return await self.until(order_id, lambda v: v.status in statuses, f"status in {statuses}")

    async def result(self, order_id: str) -> OrderView:
        return await asyncio.wait_for(self.handle(order_id).result(), WAIT)

    async def skip(self, order_id: str, duration: timedelta) -> None:
        """Move the order's clock on by `duration`, firing its timers (and retry back-offs) on the way."""
        await asyncio.wait_for(self.env.fast_forward(self.handle(order_id), duration), WAIT)

    async def now(self, order_id: str) -> datetime:
        return await self.env.get_current_time(self.handle(order_id))

    async def written(self, order_id: str, event_type: str) -> None:
        """Until the order has written an event of that type (the events row, not just its view)."""
        await eventually(
            lambda: self.world.event_types(order_id), lambda types: event_type in types, event_type
        )

    async def messaged(self, order_id: str, kind: str) -> None:
        """Until the order has written a message of that kind to the outbox (with a workflow task's write)."""
        await eventually(lambda: self.world.messages(order_id), lambda kinds: kind in kinds, kind)

    # ---- support ----

    async def release(self, order_id: str) -> OrderView:
        return await orders_service.release_order(self.client, order_id, by="agent-1")

    async def cancel(
        self, order_id: str, reason: str = "customer changed their mind", lines: dict[str, int] | None = None
    ) -> OrderView:
        cut = None if lines is None else [CancelLine(sku=k, quantity=q) for k, q in lines.items()]
        return await orders_service.cancel_order(self.client, order_id, reason, by="agent-1", lines=cut)

    async def resolve(self, order_id: str, shipment_id: str, choice: Resolution) -> OrderView:
        return await fulfilment_service.resolve_shipment(
            self.client, order_id, ResolveRequest(shipment_id=shipment_id, resolution=choice, by="agent-1")
        )

    async def retry_reservation(self, order_id: str) -> bool:
        return await self.handle(order_id).execute_update(OrderUpdate.retry_reservation, result_type=bool)

    async def feedback(self, order_id: str, score: int, comment: str | None = None) -> None:
        from models.orders import FeedbackIn

        await orders_service.give_feedback(self.client, order_id, FeedbackIn(score=score, comment=comment))

    async def request_return(self, order_id: str, sku: str, quantity: int, **kw: Any) -> ReturnView:
        request = ReturnIn(sku=sku, quantity=quantity, reason=kw.pop("reason", "does not fit"), **kw)
        return await orders_service.request_return(self.client, order_id, request, by="customer")

    async def customer_return(
        self, order_id: str, lines: dict[str, int], reason: str = "damaged", limit: str = "0"
    ) -> ReturnView:
        from decimal import Decimal

        from models.orders import CustomerReturnIn

        request = CustomerReturnIn.model_validate(
            {"lines": [{"sku": sku, "quantity": q} for sku, q in lines.items()], "reason": reason}
        )
        return await orders_service.customer_return(self.client, order_id, request, Decimal(limit))

    async def decide_return(
        self, order_id: str, rma: str, approve: bool, note: str | None = None
    ) -> ReturnView:
        from models.orders import ReturnDecisionIn

        return await orders_service.decide_return(
            self.client, order_id, rma, approve, ReturnDecisionIn(note=note), by="agent-1"
        )

    async def goodwill(
        self, order_id: str, amount: str, reason: str = "late_delivery", key: str | None = None, **kw: Any
    ) -> GoodwillRefundView:
        refund = GoodwillIn.model_validate({"amount": amount, "reason": reason, **kw})
        return await orders_service.goodwill_refund(self.client, order_id, refund, key=key, by="agent-1")

    async def receive_return(self, order_id: str, rma: str, condition: str) -> None:
        await orders_service.receive_return(
            self.client, order_id, ReturnReceipt(rma=rma, condition=condition, by="warehouse-W1")
        )

    # ---- the warehouse ----

    async def released(self, order_id: str) -> OrderView:
        """Until every shipment not yet picked is with its warehouse (the release window is over)."""
        return await self.until(
            order_id,
            lambda v: (
                bool(v.shipments)
                and all(s.status != ShipmentStatus.allocated for s in v.shipments)
                and any(s.status == ShipmentStatus.released for s in v.shipments)
            ),
            "released to the warehouse",
        )

    async def report(self, shipment_id: str, step: str, **fields: Any) -> ReportOutcome:
        report = WarehouseReport.model_validate(
            {"shipment_id": shipment_id, "step": step, "by": "picker-1", **fields}
        )
        return await fulfilment_service.submit_warehouse_report(self.client, report)

    async def pick(self, shipment: ShipmentView, found: dict[str, int] | None = None) -> ReportOutcome:
        lines = [
            PickedLine(sku=x.sku, quantity=(found or {}).get(x.sku, x.quantity)).model_dump()
            for x in shipment.lines
        ]
        return await self.report(shipment.id, "picked", lines=lines)

    async def pack(self, shipment_id: str, parcels_g: list[int] | None = None) -> ReportOutcome:
        return await self.report(shipment_id, "packed", parcels_g=parcels_g or [900])

    async def hand_over(self, shipment_id: str) -> ReportOutcome:
        return await self.report(shipment_id, "handed_over")

    async def ship(self, order_id: str, shipment: ShipmentView) -> ShipmentView:
        """Pick in full, pack, hand over: the shipment is with the carrier."""
        await self.pick(shipment)
        await self.pack(shipment.id)
        await self.hand_over(shipment.id)
        view = await self.view(order_id)
        return next(s for s in view.shipments if s.id == shipment.id)

    async def to_carrier(self, order_id: str) -> OrderView:
        """Past the release window, every shipment picked, packed and handed over."""
        await self.skip(order_id, self.policy.release_delay)
        view = await self.released(order_id)
        for shipment in view.shipments:
            if shipment.status != ShipmentStatus.cancelled:  # every unit cancelled or edited out
                await self.ship(order_id, shipment)
        return await self.status(order_id, "shipped")

    # ---- the carrier ----

    async def carrier(
        self, order_id: str, shipment_id: str, kind: CarrierEventType, attempt: int | None = None
    ) -> ReportOutcome:
        view = await self.view(order_id)
        shipment = next(s for s in view.shipments if s.id == shipment_id)
        assert shipment.tracking_number and shipment.shipped_at and shipment.released_at
        at = max(shipment.released_at, shipment.shipped_at) + timedelta(minutes=1 + len(shipment.tracking))
        event = CarrierEvent(
            tracking_number=shipment.tracking_number,
            type=kind,
            event_id=f"ev-{uuid.uuid4().hex[:8]}",
            at=at,
            attempt=attempt,
            by="carrier-api",
        )
        return await orders_service.update_order(
            self.client, order_id, OrderUpdate.carrier_event, ReportOutcome, event
        )

    async def deliver_all(self, order_id: str) -> OrderView:
        view = await self.view(order_id)
        for s in view.shipments:
            if s.status == ShipmentStatus.shipped:
                await self.carrier(order_id, s.id, CarrierEventType.delivered)
        return await self.status(order_id, "delivered")


async def eventually(probe: Callable[[], Awaitable[T] | T], check: Callable[[T], bool], what: str) -> T:
    """tests.helpers.eventually at the fast tier's pace: time is skipped, so answers come quickly."""
    return await helpers.eventually(probe, check, timeout=WAIT, what=what, every=0.02)
