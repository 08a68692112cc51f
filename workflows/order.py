"""OrderWorkflow: the single owner of one order's state machine, from placement to the end of its return window."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.fulfilment import FulfilmentActivities
    from activities.inventory import InventoryActivities
    from activities.notifications import NotificationActivities
    from activities.orders import OrderActivities
    from activities.payments import PaymentActivities
    from models import search_attributes as sa
    from models.orders import (
        DeliveryConfirmation,
        EventView,
        FeedbackIn,
        FeedbackView,
        OrderStatus,
        OrderView,
        PaymentStatus,
        PlaceOrder,
        ShipmentStatus,
        ShipmentView,
    )
    from models.steps import (
        DeliveryRecord,
        ErrorType,
        EventRecord,
        FeedbackRecord,
        NotificationRequest,
        PaymentRequest,
        ReserveRequest,
        ShipmentRef,
        ShipRequest,
    )
    from workflows.options import LOCAL_STEP_TIMEOUT, RETRY_FOREVER, STEP_TIMEOUT

# The order's status follows its least advanced shipment.
_STAGE_OF_SHIPMENT = {
    ShipmentStatus.allocated: OrderStatus.confirmed,
    ShipmentStatus.picking: OrderStatus.picking,
    ShipmentStatus.packed: OrderStatus.packed,
    ShipmentStatus.shipped: OrderStatus.shipped,
    ShipmentStatus.delivered: OrderStatus.delivered,
}
_STAGES = list(_STAGE_OF_SHIPMENT.values())


class OrderFailed(Exception):
    """A business refusal that ends the order (after compensation) with `status`."""

    def __init__(self, status: OrderStatus, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@workflow.defn
class OrderWorkflow:
    @workflow.init
    def __init__(self, request: PlaceOrder) -> None:
        order = request.order
        self._request = request
        self._view = OrderView(
            order_id=request.order_id,
            status=OrderStatus.received,
            payment_status=PaymentStatus.pending,
            channel=order.channel,
            customer_id=order.customer.id,
            currency=order.currency,
            placed_at=request.placed_at,
        )
        self._seq = 0
        self._delivered: set[str] = set()
        self._undo: list[tuple[str, Callable[[], Awaitable[Any]]]] = []

    # ---- the run ----

    @workflow.run
    async def run(self, request: PlaceOrder) -> OrderView:
        await self._step(OrderActivities.record_order, request, "record the order")
        lines = len(request.order.lines)
        await self._event("order_received", f"{lines} line{'s' * (lines != 1)} via {request.order.channel}")
        try:
            await self._accept()
            await self._fulfil()
        except OrderFailed as failure:
            await self._compensate()
            await self._set_status(failure.status, "order_" + failure.status.value, failure.reason)
            await self._notify("order_rejected", "rejected", reason=failure.reason)
            return self._view
        await self._await_return_window()
        await self._set_status(OrderStatus.completed, "order_completed", "return window closed")
        return self._view

    async def _accept(self) -> None:
        """Validate, authorize, reserve and confirm; raises OrderFailed on a business refusal."""
        request = self._request
        try:
            priced = await self._step(OrderActivities.validate_order, request, "validate against the catalog")
        except ActivityError as err:
            raise self._refusal(err, OrderStatus.rejected) from err
        self._view.lines, self._view.total = priced.lines, priced.total
        workflow.upsert_search_attributes([sa.ORDER_TOTAL.value_set(float(priced.total))])
        await self._event("order_validated", f"total {priced.total} {priced.currency}")

        payment = PaymentRequest(
            order_id=request.order_id,
            idempotency_key=self._key("authorize"),
            amount=priced.total,
            currency=priced.currency,
            token=request.order.payment.token,
        )
        self._push_undo("void the authorization", self._void_payment)
        try:
            auth = await self._step(
                PaymentActivities.authorize_payment, payment, f"authorize {priced.total} {priced.currency}"
            )
        except ActivityError as err:
            self._view.payment_status = PaymentStatus.declined
            raise self._refusal(err, OrderStatus.rejected) from err
        self._view.payment_status = PaymentStatus.authorized
        await self._event("payment_authorized", f"{auth.amount} {priced.currency} ({auth.reference})")

        self._push_undo("release the reserved stock", self._release_stock)
        reserve = ReserveRequest(
            order_id=request.order_id,
            lines=[{"sku": line.sku, "quantity": line.quantity} for line in priced.lines],  # type: ignore[misc]
            shipment_prefix=f"{request.order_id}-S",
        )
        try:
            allocated = await self._step(InventoryActivities.reserve_stock, reserve, "reserve stock")
        except ActivityError as err:
            raise self._refusal(err, OrderStatus.rejected) from err
        prices = {line.sku: line.unit_price for line in priced.lines}
        self._view.shipments = [
            ShipmentView(
                id=s.id,
                warehouse=s.warehouse,
                lines=s.lines,
                amount=sum((prices[line.sku] * line.quantity for line in s.lines), Decimal("0")),
            )
            for s in allocated
        ]
        where = ", ".join(f"{s.id} from {s.warehouse}" for s in allocated)
        await self._event("stock_reserved", where)

        self._view.expected_delivery = workflow.now() + request.policy.delivery_sla
        await self._set_status(
            OrderStatus.confirmed,
            "order_confirmed",
            f"expected delivery by {self._view.expected_delivery:%Y-%m-%d %H:%M} UTC",
        )
        await self._notify(
            "order_confirmed",
            "confirmed",
            lines="\n".join(
                f"  {line.quantity} x {line.name} ({line.sku}) at {line.unit_price}" for line in priced.lines
            ),
            total=str(priced.total),
            currency=priced.currency,
            expected_delivery=f"{self._view.expected_delivery:%A %d %B %Y}",
        )

    async def _fulfil(self) -> None:
        """One fulfilment unit per shipment, concurrently; then the feedback request."""
        await asyncio.gather(*(self._fulfil_shipment(s) for s in self._view.shipments))

    async def _fulfil_shipment(self, shipment: ShipmentView) -> None:
        ref = ShipmentRef(order_id=self._view.order_id, shipment_id=shipment.id)
        await self._shipment_status(shipment, ShipmentStatus.picking)
        units = await self._step(
            InventoryActivities.pick_stock, ref, f"pick {shipment.id} in {shipment.warehouse}"
        )
        await self._event("shipment_picked", f"{shipment.id}: {units} units picked in {shipment.warehouse}")

        packed = await self._step(FulfilmentActivities.pack_shipment, ref, f"pack {shipment.id}")
        shipment.weight_g = packed.weight_g
        await self._shipment_status(
            shipment, ShipmentStatus.packed, f"{shipment.id}: {packed.weight_g} g, labelled"
        )

        ship = ShipRequest(
            order_id=ref.order_id,
            shipment_id=shipment.id,
            warehouse=shipment.warehouse,
            weight_g=packed.weight_g,
            address=self._request.order.shipping_address,
        )
        try:
            booked = await self._step(
                FulfilmentActivities.ship_shipment, ship, f"book the carrier for {shipment.id}"
            )
        except ActivityError as err:
            raise self._refusal(err, OrderStatus.cancelled) from err
        shipment.carrier, shipment.tracking_number, shipment.shipped_at = (
            booked.carrier,
            booked.tracking_number,
            booked.shipped_at,
        )
        capture = PaymentRequest(
            order_id=ref.order_id,
            idempotency_key=self._key(f"capture:{shipment.id}"),
            amount=shipment.amount,
            currency=self._view.currency,
        )
        await self._step(
            PaymentActivities.capture_payment, capture, f"capture {shipment.amount} {capture.currency}"
        )
        self._view.payment_status = PaymentStatus.captured
        await self._event("payment_captured", f"{shipment.amount} {capture.currency} for {shipment.id}")
        await self._shipment_status(
            shipment,
            ShipmentStatus.shipped,
            f"{shipment.id} with {booked.carrier}, tracking {booked.tracking_number}",
        )
        await self._notify(
            "order_shipped",
            f"shipped:{shipment.id}",
            shipment_id=shipment.id,
            warehouse=shipment.warehouse,
            carrier=booked.carrier,
            tracking_number=booked.tracking_number,
        )
        await self._await_delivery(shipment)

    async def _await_delivery(self, shipment: ShipmentView) -> None:
        policy = self._request.policy
        try:
            await workflow.wait_condition(
                lambda: shipment.id in self._delivered,
                timeout=policy.delivery_sla,
                timeout_summary=f"delivery SLA for {shipment.id}",
            )
        except TimeoutError:
            await self._flag_overdue(shipment)
            await workflow.wait_condition(lambda: shipment.id in self._delivered)
        delivered_at = workflow.now()
        await self._step(
            FulfilmentActivities.record_delivery,
            DeliveryRecord(order_id=self._view.order_id, shipment_id=shipment.id, delivered_at=delivered_at),
            f"record delivery of {shipment.id}",
        )
        shipment.delivered_at = delivered_at
        await self._shipment_status(shipment, ShipmentStatus.delivered, f"{shipment.id} delivered")
        await self._notify("order_delivered", f"delivered:{shipment.id}", shipment_id=shipment.id)

    async def _flag_overdue(self, shipment: ShipmentView) -> None:
        sla = self._request.policy.delivery_sla
        await self._event("delivery_overdue", f"{shipment.id}: no delivery confirmation {sla} after shipping")
        if not self._view.overdue:
            self._view.overdue = True
            workflow.upsert_search_attributes([sa.DELIVERY_OVERDUE.value_set(True)])
        await self._notify(
            "delivery_overdue",
            f"overdue:{shipment.id}",
            to_support=True,
            sla=str(sla),
            carrier=shipment.carrier or "",
            tracking_numbers=shipment.tracking_number or "",
        )

    async def _await_return_window(self) -> None:
        await workflow.sleep(self._request.policy.return_window, summary="return window")
        await workflow.wait_condition(workflow.all_handlers_finished)

    # ---- compensation (saga) ----

    def _push_undo(self, what: str, undo: Callable[[], Awaitable[Any]]) -> None:
        self._undo.append((what, undo))

    async def _compensate(self) -> None:
        """Run the registered undos in reverse; each retries until it succeeds."""
        while self._undo:
            what, undo = self._undo.pop()
            await undo()
            await self._event("compensated", what)

    async def _void_payment(self) -> None:
        request = PaymentRequest(
            order_id=self._view.order_id,
            idempotency_key=self._key("void"),
            amount=Decimal("0"),
            currency=self._view.currency,
        )
        if self._view.payment_status == PaymentStatus.authorized:
            await self._step(PaymentActivities.void_payment, request, "void the authorization")
            self._view.payment_status = PaymentStatus.voided

    async def _release_stock(self) -> None:
        for shipment in self._view.shipments:
            ref = ShipmentRef(order_id=self._view.order_id, shipment_id=shipment.id)
            await self._step(InventoryActivities.release_stock, ref, f"release stock of {shipment.id}")
            shipment.status = ShipmentStatus.cancelled

    # ---- handlers ----

    @workflow.query
    def view(self) -> OrderView:
        return self._view

    @workflow.signal
    def confirm_delivery(self, confirmation: DeliveryConfirmation) -> None:
        for shipment in self._view.shipments:
            if confirmation.shipment_id in (None, shipment.id) and shipment.status == ShipmentStatus.shipped:
                self._delivered.add(shipment.id)

    @workflow.signal
    async def submit_feedback(self, feedback: FeedbackIn) -> None:
        self._view.feedback = FeedbackView(score=feedback.score, comment=feedback.comment)
        await self._step(
            OrderActivities.record_feedback,
            FeedbackRecord(order_id=self._view.order_id, score=feedback.score, comment=feedback.comment),
            "store the feedback",
        )
        await self._event(
            "feedback_received",
            f"score {feedback.score}" + (f": {feedback.comment}" if feedback.comment else ""),
        )

    # ---- helpers ----

    def _key(self, step: str) -> str:
        """Idempotency key for an outside-world request: the workflow id plus the step."""
        return f"{workflow.info().workflow_id}:{step}"

    def _refusal(self, err: ActivityError, status: OrderStatus) -> OrderFailed | ActivityError:
        cause = err.cause
        if (
            isinstance(cause, ApplicationError)
            and cause.non_retryable
            and cause.type in vars(ErrorType).values()
        ):
            return OrderFailed(status, cause.message)
        return err

    async def _step(self, activity: Callable[..., Any], arg: Any, summary: str) -> Any:
        return await workflow.execute_activity_method(
            activity, arg, start_to_close_timeout=STEP_TIMEOUT, retry_policy=RETRY_FOREVER, summary=summary
        )

    async def _event(self, event_type: str, detail: str = "") -> None:
        """Append to the live view and the audit trail, and mirror status on the orders row."""
        self._seq += 1
        at = workflow.now()
        self._view.events.append(EventView(at=at, type=event_type, detail=detail))
        workflow.set_current_details(self._details())
        await workflow.execute_local_activity_method(
            OrderActivities.record_event,
            EventRecord(
                order_id=self._view.order_id,
                seq=self._seq,
                at=at,
                type=event_type,
                detail=detail,
                status=self._view.status,
                payment_status=self._view.payment_status,
                total=self._view.total,
            ),
            start_to_close_timeout=LOCAL_STEP_TIMEOUT,
            retry_policy=RETRY_FOREVER,
            summary=event_type,
        )

    async def _set_status(self, status: OrderStatus, event_type: str, detail: str = "") -> None:
        if status != self._view.status:
            self._view.status = status
            workflow.upsert_search_attributes([sa.ORDER_STATUS.value_set(status.value)])
        await self._event(event_type, detail)

    async def _shipment_status(
        self, shipment: ShipmentView, status: ShipmentStatus, detail: str = ""
    ) -> None:
        shipment.status = status
        stage = min((_STAGE_OF_SHIPMENT[s.status] for s in self._view.shipments), key=_STAGES.index)
        await self._set_status(stage, f"shipment_{status.value}", detail or f"{shipment.id} {status.value}")

    async def _notify(self, kind: str, key: str, to_support: bool = False, **context: str) -> None:
        request = NotificationRequest(
            order_id=self._view.order_id,
            kind=kind,
            idempotency_key=self._key(f"notify:{key}"),
            context=context,
            to_support=to_support,
        )
        await self._step(NotificationActivities.send_notification, request, f"notify: {kind}")

    def _details(self) -> str:
        v = self._view
        total = f"{v.total} {v.currency}" if v.total is not None else "not priced yet"
        lines = [f"**{v.status.value}** · payment {v.payment_status.value} · {total}"]
        lines += [
            f"- {s.id} ({s.warehouse}): {s.status.value}"
            + (f", {s.carrier} {s.tracking_number}" if s.tracking_number else "")
            for s in v.shipments
        ]
        if v.events:
            last = v.events[-1]
            lines.append(f"last: {last.type} {last.detail}")
        return "\n".join(lines)
