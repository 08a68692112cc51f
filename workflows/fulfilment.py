"""Fulfilment, one unit per shipment: pick, pack, ship (carrier booking and capture), await delivery."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.fulfilment import FulfilmentActivities
    from activities.inventory import InventoryActivities
    from activities.payments import PaymentActivities
    from models import search_attributes as sa
    from models.events import OrderEventType, ReasonCode
    from models.orders import DeliveryConfirmation, OrderStatus, ShipmentStatus, ShipmentView
    from models.steps import DeliveryRecord, NotificationKind, ShipmentRef, ShipRequest
    from workflows.context import OrderContext
    from workflows.journal import by_whom
    from workflows.payments import money
    from workflows.saga import Saga

# While fulfilment runs, the order's status follows its least advanced (original) shipment; a parcel
# in trouble (lost, coming back, held up) makes it `delivery_exception` until that is settled.
_ORDER_STAGE = {
    ShipmentStatus.backordered: OrderStatus.backordered,
    ShipmentStatus.allocated: OrderStatus.confirmed,
    ShipmentStatus.released: OrderStatus.picking,
    ShipmentStatus.picking: OrderStatus.picking,
    ShipmentStatus.picked: OrderStatus.picking,
    ShipmentStatus.packed: OrderStatus.packed,
    ShipmentStatus.shipped: OrderStatus.shipped,
    ShipmentStatus.delivered: OrderStatus.delivered,
}
_STAGES = [
    OrderStatus.backordered,
    OrderStatus.confirmed,
    OrderStatus.picking,
    OrderStatus.packed,
    OrderStatus.shipped,
    OrderStatus.delivered,
]
_FOLLOWS_SHIPMENTS = frozenset([*_STAGES, OrderStatus.delivery_exception])


def undo_reservation(saga: Saga, ctx: OrderContext, shipment_id: str, tagged: bool = True) -> None:
    """On compensation, release the stock reserved for a shipment (`tagged`: the undo belongs to the
    shipment, so a parcel kept with the carrier keeps it too)."""
    ref = ShipmentRef(order_id=ctx.order_id, shipment_id=shipment_id)
    saga.push(
        f"release the stock reserved for {shipment_id}",
        lambda retry: ctx.step(InventoryActivities.release_stock, ref, f"release {shipment_id}", retry),
        *((shipment_id,) if tagged else ()),
    )


def return_stock_of_lost_steps(saga: Saga, ctx: OrderContext) -> None:
    """On compensation, after every other undo: return what the order still holds in stock. A local step
    (reserve, pick) runs inside a workflow task; if its worker dies before the task completes, the
    step's booking stays in the database while the order's history never shows it. The order runs
    that step again as it goes on, and finds the booking; but a cancellation arriving first (ahead of
    the step in the next task) ends the order before it gets there, and no undo of that step exists."""
    saga.push_safety_net(
        "return the stock a lost workflow task left with the order",
        lambda retry: ctx.step(
            InventoryActivities.return_order_stock, ctx.order_id, "return what the order still holds", retry
        ),
    )


def undo_pick(saga: Saga, ctx: OrderContext, shipment_id: str) -> None:
    """On compensation, put a shipment's picked units back on the shelf."""
    ref = ShipmentRef(order_id=ctx.order_id, shipment_id=shipment_id)
    saga.push(
        f"put the picked units of {shipment_id} back on the shelf",
        lambda retry: ctx.step(InventoryActivities.restock_picked, ref, f"restock {shipment_id}", retry),
        shipment_id,
    )


async def book_carrier(
    ctx: OrderContext,
    saga: Saga,
    shipment: ShipmentView,
    weight_g: int,
    booking: Callable[..., Any],
    track: bool = False,
) -> Any:
    """Book the carrier with the `booking` activity (the old path books and ships at once, the new one
    prints the label, and with `track` asks the carrier to report on the parcel), its cancellation
    registered first; a carrier's refusal cancels the order."""
    ref = ShipmentRef(order_id=ctx.order_id, shipment_id=shipment.id)
    saga.push(
        f"cancel the carrier booking of {shipment.id}",
        lambda retry: ctx.step(
            FulfilmentActivities.cancel_carrier_booking, ref, f"cancel booking {shipment.id}", retry
        ),
        shipment.id,
    )
    ship = ShipRequest(
        order_id=ctx.order_id,
        shipment_id=shipment.id,
        warehouse=shipment.warehouse,
        weight_g=weight_g,
        address=ctx.request.order.shipping_address,
        track=track,
    )
    return await ctx.step_or_fail(booking, ship, f"book the carrier for {shipment.id}", OrderStatus.cancelled)


class Fulfilment:
    def __init__(self, ctx: OrderContext) -> None:
        self._ctx = ctx
        self._delivered: dict[str, str | None] = {}  # shipment id -> who confirmed the delivery

    def confirm_delivery(self, confirmation: DeliveryConfirmation) -> None:
        """The carrier's confirmation; only shipments on their way can be delivered."""
        for shipment in self._ctx.view.shipments:
            if confirmation.shipment_id in (None, shipment.id) and shipment.status == ShipmentStatus.shipped:
                self._delivered.setdefault(shipment.id, confirmation.by)

    async def dispatch(self, shipment: ShipmentView, saga: Saga) -> None:
        """Pick, pack and ship; raises OrderFailed when the order is stopped or the carrier refuses."""
        ctx, ref = self._ctx, ShipmentRef(order_id=self._ctx.order_id, shipment_id=shipment.id)
        ctx.checkpoint()
        await self.set_status(
            shipment, ShipmentStatus.picking, f"{shipment.id}: picking in {shipment.warehouse}"
        )
        undo_pick(saga, ctx, shipment.id)
        units = await ctx.step(
            InventoryActivities.pick_stock, ref, f"pick {shipment.id} in {shipment.warehouse}"
        )
        await ctx.event(
            OrderEventType.shipment_picked, f"{shipment.id}: {units} units picked in {shipment.warehouse}"
        )
        ctx.checkpoint()

        packed = await ctx.step(FulfilmentActivities.pack_shipment, ref, f"pack {shipment.id}")
        shipment.weight_g = packed.weight_g
        await self.set_status(
            shipment, ShipmentStatus.packed, f"{shipment.id}: {packed.weight_g} g, labelled"
        )
        ctx.checkpoint()

        booked = await book_carrier(ctx, saga, shipment, packed.weight_g, FulfilmentActivities.ship_shipment)

        shipment.carrier, shipment.tracking_number, shipment.shipped_at = (
            booked.carrier,
            booked.tracking_number,
            booked.shipped_at,
        )
        if shipment.amount > 0:
            await self.capture(shipment, saga)
        await self.set_status(
            shipment,
            ShipmentStatus.shipped,
            f"{shipment.id} with {booked.carrier}, tracking {booked.tracking_number}",
        )

    async def await_delivery(self, shipment: ShipmentView) -> None:
        """Wait for the carrier's confirmation; past the delivery SLA flag the order overdue and keep waiting."""
        ctx = self._ctx
        arrived = lambda: shipment.id in self._delivered or ctx.stop is not None  # noqa: E731
        try:
            await workflow.wait_condition(
                arrived, timeout=ctx.policy.delivery_sla, timeout_summary=f"delivery SLA for {shipment.id}"
            )
        except TimeoutError:
            await self.flag_overdue(shipment)
            await workflow.wait_condition(arrived)
        if shipment.id not in self._delivered:
            return
        delivered_at = workflow.now()
        record = DeliveryRecord(order_id=ctx.order_id, shipment_id=shipment.id, delivered_at=delivered_at)
        await ctx.step(FulfilmentActivities.record_delivery, record, f"record delivery of {shipment.id}")
        shipment.delivered_at = delivered_at
        await self.set_status(
            shipment,
            ShipmentStatus.delivered,
            f"{shipment.id} delivered{by_whom(self._delivered[shipment.id])}",
        )

    async def capture(self, shipment: ShipmentView, saga: Saga) -> None:
        ctx = self._ctx
        capture = ctx.payment_request(f"capture:{shipment.id}", shipment.amount)
        refund = capture.model_copy(update={"idempotency_key": ctx.key(f"refund:capture:{shipment.id}")})
        captured = False

        async def undo(retry: RetryPolicy) -> None:
            if not captured:  # the capture never went through (a cancellation stopped it): nothing to refund
                return
            ctx.payments.book(
                await ctx.step(
                    PaymentActivities.refund_payment,
                    refund,
                    f"refund {money(refund.amount, refund.currency)}",
                    retry,
                )
            )

        saga.push(f"refund the capture for {shipment.id}", undo, shipment.id)
        ctx.payments.book(
            await ctx.step(
                PaymentActivities.capture_payment,
                capture,
                f"capture {money(capture.amount, capture.currency)}",
            )
        )
        captured = True
        await ctx.event(
            OrderEventType.payment_captured, f"{money(shipment.amount, capture.currency)} for {shipment.id}"
        )

    async def flag_overdue(self, shipment: ShipmentView) -> None:
        ctx, sla = self._ctx, self._ctx.policy.delivery_sla
        await ctx.event(
            OrderEventType.delivery_overdue, f"{shipment.id}: no delivery confirmation {sla} after shipping"
        )
        if not ctx.view.overdue:
            ctx.view.overdue = True
            ctx.upsert(sa.DELIVERY_OVERDUE.value_set(True))
        await ctx.notify(
            NotificationKind.delivery_overdue,
            f"overdue:{shipment.id}",
            to_support=True,
            sla=str(sla),
            carrier=shipment.carrier or "",
            tracking_numbers=shipment.tracking_number or "",
        )

    async def set_status(
        self,
        shipment: ShipmentView,
        status: ShipmentStatus,
        detail: str,
        code: ReasonCode | None = None,
        event_type: OrderEventType | None = None,
    ) -> None:
        """`code`: why, where the status alone does not say; a parcel in trouble's event says why by
        its trouble (lost, coming back). `event_type`: the event, where it is not the status's own (a
        carrier's scan that left the status as it was)."""
        shipment.status = status
        trouble = shipment.trouble_kind if status == ShipmentStatus.exception else None
        code = ReasonCode(trouble.value) if trouble else code
        ctx = self._ctx
        originals = [s for s in ctx.view.shipments if s.exchange_for is None]
        stages = [_ORDER_STAGE[s.status] for s in originals if s.status in _ORDER_STAGE]
        in_trouble = any(
            s.status == ShipmentStatus.exception or (s.trouble and s.status == ShipmentStatus.shipped)
            for s in originals
        )
        if shipment.exchange_for is None and ctx.view.status in _FOLLOWS_SHIPMENTS and (stages or in_trouble):
            stage = OrderStatus.delivery_exception if in_trouble else min(stages, key=_STAGES.index)
            await ctx.set_status(stage, event_type or OrderEventType.of_shipment(status), detail, code)
        else:
            await ctx.event(event_type or OrderEventType.of_shipment(status), detail, code)
