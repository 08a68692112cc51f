"""OrderWorkflow: the single owner of one order's state machine, from placement to the end of its return window."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from datetime import datetime, timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.inventory import InventoryActivities
    from activities.orders import OrderActivities
    from activities.payments import PaymentActivities
    from activities.replenishment import ReplenishmentActivities
    from models import search_attributes as sa
    from models.events import OrderEventType, ReasonCode
    from models.fulfilment import CarrierEvent, ReportOutcome, ResolveRequest, WarehouseReport
    from models.order_money import OrderMoney, shipment_amounts, split
    from models.orders import (
        CancelRequest,
        CustomerReturnRequest,
        DeliveryConfirmation,
        EditRequest,
        Feedback,
        FeedbackView,
        GoodwillReason,
        GoodwillRefundView,
        GoodwillRequest,
        OrderStatus,
        OrderView,
        PaymentStatus,
        PlaceOrder,
        PricedLine,
        ReleaseRequest,
        ReturnDecision,
        ReturnReceipt,
        ReturnRequest,
        ReturnStatus,
        ReturnView,
        ShipmentLine,
        ShipmentStatus,
        ShipmentView,
        SupportNote,
    )
    from models.shipping import CarrierEventType
    from models.steps import (
        AddressEdit,
        Admission,
        AllocatedShipment,
        FeedbackRecord,
        KeepUnits,
        NotificationKind,
        PaymentResult,
        ReserveRequest,
    )
    from models.validation import field_problems
    from models.workflow_names import ORDER_WORKFLOW, OrderQuery, OrderSignal, OrderUpdate
    from workflows.address_change import AddressAfterRelease, refuse_edit
    from workflows.context import OrderContext
    from workflows.failures import OrderFailed, business_refusal, refusal_code, shortage
    from workflows.fulfilment import Fulfilment, return_stock_of_lost_steps, undo_reservation
    from workflows.journal import by_whom
    from workflows.line_edits import LineEdits, release_hold
    from workflows.parties import Inbox, Legs, lines_cancelled, refuse_report
    from workflows.payments import money
    from workflows.returns import ReturnDesk
    from workflows.saga import Saga

CANCELLABLE = frozenset(
    {
        OrderStatus.received,
        OrderStatus.on_hold,
        OrderStatus.backordered,
        OrderStatus.confirmed,
        OrderStatus.picking,
        OrderStatus.packed,  # until the carrier has the parcel
    }
)
# a shipment whose units a partial cancellation can take (least advanced first): not yet packed
PARTLY_CANCELLABLE = [ShipmentStatus.allocated, ShipmentStatus.released, ShipmentStatus.picked]
DONE_WITH = frozenset({ShipmentStatus.cancelled, ShipmentStatus.resolved})  # no units of the order any more
CANCEL_REFUSED = "CancelRefused"  # a partial cancellation found refused when it came to be applied
ENDED = frozenset({OrderStatus.rejected, OrderStatus.cancelled, OrderStatus.completed})
# Where a placed order comes to rest for its placer: accepted, refused, or waiting for a person or stock.
SETTLED = frozenset(OrderStatus) - {OrderStatus.received}
# Parcels with the carrier or the customer: a cancellation from Temporal keeps them (see _end).
HANDED_OVER = frozenset(
    {ShipmentStatus.shipped, ShipmentStatus.delivered, ShipmentStatus.exception, ShipmentStatus.resolved}
)
STOPPED_FROM_TEMPORAL = "cancelled from Temporal by an operator"
UNREADABLE_INPUT = "UnreadableOrderInput"  # the failure type of a run whose input the model refuses
# A goodwill refund refused by its validator (nothing moved): the order is in no state for one (409),
# or the request itself cannot be granted (422: an amount above what is refundable, another currency).
GOODWILL_REFUSED = "GoodwillRefused"
GOODWILL_INVALID = "GoodwillInvalid"
# what the customer's message says the gesture is for
GOODWILL_WHY = {
    GoodwillReason.damaged_item: "the damaged item",
    GoodwillReason.late_delivery: "the late delivery",
    GoodwillReason.price_adjustment: "the price of your order",
    GoodwillReason.service_issue: "the trouble you had with our service",
    GoodwillReason.other: "the inconvenience",
}


@workflow.defn(name=ORDER_WORKFLOW)
class OrderWorkflow:
    @workflow.init
    def __init__(self, request: RawValue) -> None:
        # The input is decoded here, not by the SDK: an input the model refuses (a workflow started
        # directly, past the doors) then fails the run at once with the problem named, instead of
        # failing its workflow task for ever. Only the model's refusal does that: any other decoding
        # error still fails the task, which a fixed deploy can retry.
        self._unreadable: str | None = None
        try:
            placed = workflow.payload_converter().from_payload(request.payload, PlaceOrder)
        except ValidationError as exc:
            self._unreadable = "; ".join(field_problems(exc, whole="input"))
            return
        self._request: PlaceOrder = placed
        self._ctx = OrderContext(placed)
        self._saga = Saga(self._ctx)
        self._fulfilment = Fulfilment(self._ctx)
        self._returns = ReturnDesk(self._ctx, self._fulfilment)
        self._line_edits = LineEdits(self._ctx, self._saga, self._fulfilment)
        self._inbox = Inbox(self._ctx)  # warehouses' and carriers' reports
        self._fulfilling = False  # its shipments are with warehouses and carriers (after the release window)
        self._confirmations = 0
        self._legs: Legs | None = None
        self._leg_tasks: list[asyncio.Task[None]] = []  # one per shipment, made on the way too (spawn)
        self._released = False
        self._released_by: str | None = None
        self.stock_arrived = False  # OrderHooks: stock was received (retry_reservation) since last looked
        self._reserve_attempts = 0
        self._reserved = False
        # Handlers that change the order's state across an await take a lock (the others change it
        # before their first await, then only wait for the flow's answer: see docs/architecture.md)
        self._feedback_lock = asyncio.Lock()
        self._partial_cancels = 0  # partial cancellations applied (each one's message has its own key)
        self._goodwill_in_flight: set[str] = set()  # goodwill refunds' keys, accepted and not yet done
        self._edits = 0
        self._editing = False  # an order edit is under way (one at a time; the release waits for it)
        self._cancelling_lines = False  # a partial cancellation is under way (an edit waits for it)
        self._late_address = AddressAfterRelease(self._ctx, self._inbox, self._saga)  # edits after release

        self._ended = False  # the order ended early and everyone concerned has been told
        # Temporal's own cancellation (Web UI, `temporal workflow cancel`), see run()
        self._interruptible = True  # the main flow may be interrupted (not while it ends or completes)
        self._cancelled_from_temporal = False  # it stopped the order: the run ends Canceled
        self._main: asyncio.Task[OrderView] | None = None

    # ---- the run ----

    @workflow.run
    async def run(self, request: RawValue) -> OrderView:
        if self._unreadable is not None:
            raise ApplicationError(
                f"the order workflow cannot read its input: {self._unreadable}",
                type=UNREADABLE_INPUT,
                non_retryable=True,
            )
        # Temporal's cancellation reaches this task only; the order's main flow runs in its own, so
        # that the cancellation becomes a stop the order handles like support's `cancel` (checked
        # between steps, waking every wait), and compensation, once begun, is shielded from it.
        self._ctx.interrupt = self._interrupt
        self._main = asyncio.create_task(self._run())
        while not self._main.done():
            try:
                await workflow.wait([self._main])
            except asyncio.CancelledError:
                self._stop_from_temporal()
        view = self._main.result()
        # the last events are written and the reports that ended it answered
        await self._ctx.written()
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._cancelled_from_temporal:  # compensated: the run shows what the operator asked for
            raise CancelledError(STOPPED_FROM_TEMPORAL)
        return view

    async def _run(self) -> OrderView:
        ctx, request = self._ctx, self._request
        lines = len(request.order.lines)
        received = f"{lines} line{'s' * (lines != 1)} via {request.order.channel}{by_whom(request.placed_by)}"
        try:
            try:  # recorded, validated and screened in one step; a refusal rejects the order
                admission = await ctx.step_or_fail(
                    OrderActivities.admit_order, request, "record, validate, screen", OrderStatus.rejected
                )
            finally:
                await ctx.event(OrderEventType.order_received, received)
            await self._accept(admission)
            await self._fulfil()
            if not any(s.status == ShipmentStatus.delivered for s in ctx.view.shipments):
                self._interruptible = False  # nothing reached the customer: there is nothing to return
                await ctx.set_status(
                    OrderStatus.completed,
                    OrderEventType.order_completed,
                    "nothing was delivered",
                    ReasonCode.nothing_delivered,
                )
                return ctx.view
            await self._return_window()
        except OrderFailed as failure:
            return await self._close(failure)
        except BaseException as err:
            if not (self._cancelled_from_temporal and ctx.stop is not None and is_cancelled_exception(err)):
                raise
            return await self._close(ctx.stop)  # interrupted by Temporal's cancellation
        if self._cancelled_from_temporal and ctx.stop is not None:  # it ended the return window early
            return await self._close(ctx.stop)
        self._interruptible = False
        await ctx.set_status(OrderStatus.completed, OrderEventType.order_completed, "return window closed")
        return ctx.view

    async def _close(self, failure: OrderFailed) -> OrderView:
        await self._end(failure)
        await workflow.wait_condition(workflow.all_handlers_finished)  # let `cancel` report back
        return self._ctx.view

    def _stop_from_temporal(self) -> None:
        """Temporal's cancellation arrived. An order still under way stops: the step in flight runs to
        its end (so its outcome is known), then the order is compensated like a `cancel`, and the run
        ends Canceled. An order already ending (compensating, completing) ends as it would have."""
        if not self._interruptible:
            return
        reason = workflow.cancellation_reason()
        ctx = self._ctx
        ctx.stop = ctx.stop or OrderFailed(
            OrderStatus.cancelled,
            STOPPED_FROM_TEMPORAL + (f": {reason}" if reason else ""),
            from_temporal=True,
            code=ReasonCode.cancelled_from_temporal,
        )
        self._cancelled_from_temporal = True
        self._interrupt()

    def _interrupt(self) -> None:
        """Wake the main flow wherever it waits (a hold, a backorder, a delivery, the return window, a
        step retrying for ever); it finds the stop and compensates. Never once it is ending."""
        if self._interruptible and self._main is not None and not self._main.done():
            self._main.cancel()

    async def _accept(self, admission: Admission) -> None:
        """Authorize, hold if screened so, reserve and confirm an admitted (recorded, validated and
        screened) order; raises OrderFailed on a refusal or cancellation."""
        ctx = self._ctx
        priced = admission.priced
        ctx.view.lines, ctx.view.total = priced.lines, priced.total
        ctx.view.discounts, ctx.view.shipping, ctx.view.tax = priced.discounts, priced.shipping, priced.tax
        ctx.view.subtotal = priced.total if priced.subtotal is None else priced.subtotal
        ctx.view.taxes_included = priced.taxes_included
        ctx.upsert(sa.ORDER_TOTAL.value_set(float(priced.total)), with_next_status=True)
        await ctx.event(OrderEventType.order_validated, f"total {money(priced.total, priced.currency)}")
        ctx.checkpoint()

        # a local write here would hold this workflow task open, and the gateway's call with it: what
        # was recorded so far waits for the authorization's outcome and goes in its write (a step stuck
        # meanwhile still writes at once)
        with ctx.writes_held():
            await self._authorize(priced.total)
        ctx.checkpoint()
        await self._hold_if_screened(admission.hold_reason, admission.hold_code)

        allocated = await self._reserve(priced.lines)
        # each captures its lines (discounted, taxed) and its share of the shipping: together, the total
        amounts = shipment_amounts(ctx.view.money(), [a.lines for a in allocated])
        ctx.view.shipments = [
            ShipmentView(id=a.id, warehouse=a.warehouse, lines=a.lines, amount=amount)
            for a, amount in zip(allocated, amounts, strict=True)
        ]
        for shipment in ctx.view.shipments:
            undo_reservation(self._saga, ctx, shipment.id)
        await ctx.event(
            OrderEventType.stock_reserved, ", ".join(f"{s.id} from {s.warehouse}" for s in ctx.view.shipments)
        )
        # the reservation says which of its stock is now at or below the reorder point (usually none)
        if low := [key for a in allocated for key in a.low_stock]:
            await ctx.step(ReplenishmentActivities.replenish_if_low, low, "replenish what runs low")
        ctx.checkpoint()

        ctx.view.expected_delivery = workflow.now() + ctx.policy.delivery_sla
        await ctx.set_status(
            OrderStatus.confirmed,
            OrderEventType.order_confirmed,
            f"expected delivery by {ctx.view.expected_delivery:%Y-%m-%d %H:%M} UTC",
        )
        await ctx.notify(
            NotificationKind.order_confirmed,
            "confirmed",
            lines="\n".join(f"  {x.quantity} x {x.name} ({x.sku}) at {x.unit_price}" for x in priced.lines),
            total=str(priced.total),
            currency=priced.currency,
            expected_delivery=f"{ctx.view.expected_delivery:%A %d %B %Y}",
        )

    async def _authorize(self, total: Decimal) -> None:
        ctx = self._ctx
        payment = ctx.payment_request("authorize", total, card=True)
        void = payment.model_copy(update={"idempotency_key": ctx.key("void")})

        async def undo(retry: RetryPolicy) -> None:
            if ctx.payments.held > 0:
                ctx.payments.book(
                    await ctx.step(PaymentActivities.void_payment, void, "void the authorization", retry)
                )

        try:
            result = await ctx.step_or_fail(
                PaymentActivities.authorize_payment,
                payment,
                f"authorize {money(total, payment.currency)}",
                OrderStatus.rejected,
            )
        except OrderFailed:
            ctx.view.payment_status = PaymentStatus.declined
            raise

        self._saga.push("void the authorization", undo)
        ctx.payments.book(result)
        await ctx.event(
            OrderEventType.payment_authorized,
            f"{money(result.amount, payment.currency)} ({result.reference})"
            + (f" after {result.attempt} attempts" if result.attempt > 1 else ""),
        )

    async def _reserve(self, lines: list[PricedLine]) -> list[AllocatedShipment]:
        """Reserve all lines. Short of stock that is on order: backordered until it arrives (offered by
        `retry_reservation`) or the backorder timeout cancels the order. Short otherwise: rejected."""
        ctx = self._ctx
        request = ReserveRequest(
            order_id=ctx.order_id,
            shipment_prefix=f"{ctx.order_id}-S",
            lines=[ShipmentLine(sku=x.sku, quantity=x.quantity) for x in lines],
        )
        deadline: datetime | None = None
        asked = False  # for a replenishment of the short SKUs (once)
        while True:
            self.stock_arrived = False  # stock arriving from here on triggers another attempt
            try:
                allocated = await ctx.step(InventoryActivities.reserve_stock, request, "reserve stock")
                self._reserved = True
                return allocated
            except ActivityError as err:
                reason = business_refusal(err)
                if reason is None:
                    raise
                code = refusal_code(err)
                wanted = shortage(err)
            finally:
                self._reserve_attempts += 1
            if deadline is None:
                # the reserve step read open purchase orders in the same transaction as the stock
                on_order = wanted.get("on_order", {})
                short = wanted.get("short", [])
                if not short or any(sku not in on_order for sku in short):
                    raise OrderFailed(OrderStatus.rejected, reason, code=code)
                deadline = workflow.now() + ctx.policy.backorder_timeout
                await ctx.set_status(
                    OrderStatus.backordered,
                    OrderEventType.order_backordered,
                    f"{reason}; on order: " + ", ".join(f"{on_order[s]} x {s}" for s in short),
                    code,
                )
                await ctx.notify(NotificationKind.order_backordered, "backordered", skus=", ".join(short))
                # the orders row says backordered before the retry (the writer would wait for a pause): stock
                # received from then on is offered to this order, stock received before is found now
                await ctx.written()
                continue  # stock received while we became backordered was offered to nobody: try again now
            if not asked:
                asked = True
                await ctx.ask_for_backordered_stock(wanted.get("short", []))
            try:
                await workflow.wait_condition(
                    lambda: self.stock_arrived or ctx.stop is not None,
                    timeout=deadline - workflow.now(),
                    timeout_summary="backorder timeout",
                )
            except TimeoutError:
                raise OrderFailed(
                    OrderStatus.cancelled,
                    f"still out of stock {ctx.policy.backorder_timeout} after backordering",
                    code=ReasonCode.backorder_timeout,
                ) from None
            ctx.checkpoint()

    async def _hold_if_screened(self, reason: str | None, code: ReasonCode | None) -> None:
        """The review rule said why a person must look at it (admission): hold the order; release
        continues it, the hold timeout cancels it."""
        ctx = self._ctx
        if reason is None:
            return
        ctx.view.hold_reason = reason
        await ctx.set_status(OrderStatus.on_hold, OrderEventType.order_on_hold, reason, code)
        await ctx.notify(NotificationKind.order_on_hold, "on_hold")
        try:
            await workflow.wait_condition(
                lambda: self._released or ctx.stop is not None,
                timeout=ctx.policy.hold_timeout,
                timeout_summary="hold timeout",
            )
        except TimeoutError:
            raise OrderFailed(
                OrderStatus.cancelled,
                f"on hold for longer than {ctx.policy.hold_timeout}",
                code=ReasonCode.hold_timeout,
            ) from None
        ctx.checkpoint()
        await ctx.event(OrderEventType.hold_released, f"released by {self._released_by or 'support'}")

    async def _fulfil(self) -> None:
        """After the release window, each shipment goes to its warehouse and then its carrier, who
        report back (workflows/parties.py); shipments made on the way (units re-allocated, backordered
        or reshipped) join. A failing one stops its siblings. What was authorized and not charged in
        the end (lines cancelled, parcels refunded before capture) is released."""
        ctx = self._ctx
        self._fulfilling = True
        ctx.view.releases_at = workflow.now() + ctx.policy.release_delay
        await ctx.event(
            OrderEventType.release_scheduled,
            f"to the warehouses at {ctx.view.releases_at:%Y-%m-%d %H:%M:%S} UTC; cancellable until then",
        )
        if ctx.policy.release_delay > timedelta(0):
            with suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: ctx.stop is not None,
                    timeout=ctx.policy.release_delay,
                    timeout_summary="release window",
                )
        # an edit accepted before the window closed finishes first: the warehouses get the edited order
        await workflow.wait_condition(self._not_changing)
        ctx.checkpoint()
        tasks = self._leg_tasks
        self._legs = Legs(ctx, self._inbox, self._saga, self._fulfilment, self)
        for shipment in list(ctx.view.shipments):
            if shipment.status != ShipmentStatus.cancelled:  # every unit cancelled in the release window
                self.spawn(shipment)
        failures: list[BaseException] = []
        done = 0
        try:
            while done < len(tasks):  # the list grows while shipments are made on the way
                try:
                    await tasks[done]
                except asyncio.CancelledError:
                    raise
                except Exception as err:  # every failure is raised below; what is not an Exception
                    # (GeneratorExit as the SDK evicts the run from its cache) passes: swallowing it
                    # left the run awaiting the next leg while it was being closed
                    failures.append(err)
                done += 1
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            raise
        if failures:
            raise ctx.stop if ctx.stop is not None else failures[0]
        ctx.checkpoint()
        if ctx.payments.held > 0:
            void = ctx.payment_request("void", ctx.payments.held, card=True)
            ctx.payments.book(
                await ctx.step(PaymentActivities.void_payment, void, "release what was not charged")
            )
            await ctx.event(
                OrderEventType.authorization_released, f"{money(void.amount, void.currency)} not charged"
            )
        delivered = [s.id for s in ctx.view.shipments if s.status == ShipmentStatus.delivered]
        if delivered:
            ctx.view.return_window_ends = workflow.now() + ctx.policy.return_window
            await ctx.notify(NotificationKind.order_delivered, "delivered", shipment_id=", ".join(delivered))

    def spawn(self, shipment: ShipmentView) -> None:
        """OrderHooks: run a shipment's legs (those made on the way too) alongside the others."""
        self._leg_tasks.append(asyncio.create_task(self._shipment_legs(shipment)))

    async def _shipment_legs(self, shipment: ShipmentView) -> None:
        ctx, legs = self._ctx, self._legs
        assert legs is not None
        try:
            if shipment.status == ShipmentStatus.backordered:
                await legs.backorder(shipment)
                return
            if not await legs.warehouse(shipment):
                return
        except OrderFailed as failure:
            ctx.stop = ctx.stop or failure
            raise
        await ctx.notify(
            NotificationKind.order_shipped,
            f"shipped:{shipment.id}",
            shipment_id=shipment.id,
            warehouse=shipment.warehouse,
            carrier=shipment.carrier or "",
            tracking_number=shipment.tracking_number or "",
        )
        await legs.carrier(shipment)

    async def _return_window(self) -> None:
        ctx = self._ctx
        with suppress(TimeoutError):  # a cancellation from Temporal ends the window early
            await workflow.wait_condition(
                lambda: ctx.stop is not None,
                timeout=ctx.policy.return_window,
                timeout_summary="return window",
            )
        await workflow.wait_condition(
            lambda: ctx.stop is not None or (self._returns.all_settled() and workflow.all_handlers_finished())
        )

    async def _end(self, failure: OrderFailed) -> None:
        """Compensate and tell everyone. Runs to its end: nothing interrupts it once begun.

        A cancellation from Temporal keeps the parcels already handed to the carrier (shipped or
        delivered): their units are gone from the shelf and their capture stands, because a click in
        the Web UI cannot bring a parcel back; undoing them would put units on the books that are on
        a van and refund goods the customer receives. A return (or the carrier's recall) is how they
        come back. Everything else is undone as for support's `cancel`; the event names what was kept."""
        ctx = self._ctx
        self._inbox.closed = True  # reports waiting for an answer get one: the order ended
        self._interruptible = False
        # an edit or a partial cancellation under way finishes first: its reservations and holds are
        # then on the books the compensation undoes
        await workflow.wait_condition(self._not_changing)
        kept = [s for s in ctx.view.shipments if failure.from_temporal and s.status in HANDED_OVER]
        # past the authorization a lost workflow task may have booked stock (fulfilment.py says how)
        if ctx.view.payment.authorized:
            return_stock_of_lost_steps(self._saga, ctx)
        await self._saga.compensate(frozenset(s.id for s in kept))
        for shipment in ctx.view.shipments:
            if shipment.status not in (ShipmentStatus.shipped, ShipmentStatus.delivered):
                shipment.status = ShipmentStatus.cancelled
        parcels = ", ".join(f"{s.id} ({s.status.value})" for s in kept)
        if kept and {s.id for s in ctx.view.shipments if s.exchange_for is None} <= {s.id for s in kept}:
            # every parcel is with the carrier or the customer: nothing of the order is left to cancel
            open_returns = [r.rma for r in ctx.view.returns if r.status == ReturnStatus.requested]
            await ctx.event(
                OrderEventType.run_cancelled,
                f"{failure.reason}: every parcel was already handed to the carrier ({parcels}), so the "
                "order stays as it is and nothing was undone; deliveries and returns are support's from here"
                + (f" (open returns: {', '.join(open_returns)})" if open_returns else ""),
                failure.code,
            )
            self._ended = True
            return
        kept_note = f"; kept {parcels}: already handed to the carrier, so its capture stands" if kept else ""
        await ctx.set_status(
            failure.status,
            OrderEventType.of_order(failure.status),
            failure.reason + by_whom(failure.by) + kept_note,
            failure.code,
        )
        if failure.status == OrderStatus.rejected:
            await ctx.notify(NotificationKind.order_rejected, "rejected", reason=failure.reason)
        else:
            await ctx.notify(
                NotificationKind.order_cancelled,
                "cancelled",
                reason=failure.reason,
                money=self._money_note(kept),
            )
        self._ended = True

    def _not_changing(self) -> bool:
        """No edit and no partial cancellation is under way (each changes shipments over several steps)."""
        return not (self._editing or self._cancelling_lines)

    def _money_note(self, kept: list[ShipmentView] | None = None) -> str:
        """What happened to the customer's money, in words, for the cancellation message."""
        paid, currency = self._ctx.view.payment, self._ctx.view.currency
        if kept:
            charged = paid.captured - paid.refunded
            return (
                f"You were charged {money(charged, currency)} for the parcels already on their way to you "
                f"({', '.join(s.id for s in kept)})"
                + ("; the hold on your card for the rest was released." if self._ctx.payments.voided else ".")
            )
        if paid.refunded:
            return f"We refunded {money(paid.refunded, currency)}."
        if self._ctx.payments.held > 0:
            return "Nothing was charged; the hold on your card will be released shortly."
        return "The authorization on your card was released; nothing was charged."

    # ---- queries, updates and signals ----

    @workflow.query(name=OrderQuery.view)
    def view(self) -> OrderView:
        if self._unreadable is not None:
            raise ApplicationError(f"the order workflow cannot read its input: {self._unreadable}")
        return self._ctx.view

    @workflow.update(name=OrderUpdate.wait_settled)
    async def wait_settled(self) -> OrderView:
        """Answers once the order has settled (confirmed, rejected, on hold, backordered, or beyond):
        what `place --wait` and `POST /orders?wait=true` wait for, without polling."""
        await workflow.wait_condition(lambda: self._ctx.view.status in SETTLED)
        return self._ctx.view

    @workflow.update(name=OrderUpdate.cancel)
    async def cancel(self, request: CancelRequest) -> OrderView:
        ctx = self._ctx
        if request.lines is not None:
            # again: a report accepted since the validator ran may have moved a shipment on
            try:
                plan = self._plan_partial_cancel(request)
            except ValueError as refused:  # nothing moved
                raise ApplicationError(str(refused), type=CANCEL_REFUSED, non_retryable=True) from None
            if plan is not None:
                await self._cancel_units(request, plan)
                return ctx.view
            # every unit that remains: a whole cancellation
        ctx.stop = OrderFailed(
            OrderStatus.cancelled,
            f"cancelled: {request.reason}",
            by=request.by,
            code=ReasonCode.cancelled_by_support,
        )
        await workflow.wait_condition(lambda: self._ended)
        return ctx.view

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        view = self._ctx.view
        if self._ctx.stop is not None or view.status in ENDED:
            raise ValueError(f"order {view.order_id} is already {view.status.value}")
        if request.lines is not None and self._plan_partial_cancel(request) is not None:
            return  # some units of it: the plan raised if any of them cannot be cancelled
        self._validate_whole_cancel()

    def _plan_partial_cancel(
        self, request: CancelRequest
    ) -> list[tuple[ShipmentView, list[ShipmentLine]]] | None:
        """Which shipments give up which units for a partial cancellation: (shipment, its units that
        go), least advanced shipments first (units still reserved before units already picked). None:
        the request names every unit that remains, so it is a whole cancellation. Raises ValueError
        (nothing moved) when a unit cannot be cancelled: the validator's refusal, in words."""
        ctx, view = self._ctx, self._ctx.view
        order_id = view.order_id
        if ctx.stop is not None or self._ended or view.status in ENDED:
            raise ValueError(f"order {order_id} is already {view.status.value}")
        if not self._not_changing():
            raise ValueError(
                f"order {order_id} has an edit or another partial cancellation under way: try again once it is done"
            )
        if view.status not in CANCELLABLE:
            raise ValueError(
                f"order {order_id} is {view.status.value} and can no longer be cancelled; "
                "once it has shipped, request a return instead"
            )
        if not self._reserved:
            raise ValueError(
                f"order {order_id} is {view.status.value}: its stock is not reserved yet, so lines cannot be "
                "cancelled one by one; cancel the whole order, or wait until it is confirmed"
            )
        ordered = {line.sku for line in view.lines}
        wanted = {line.sku: line.quantity for line in request.lines or []}
        for sku, quantity in wanted.items():
            if sku not in ordered:
                raise ValueError(f"SKU {sku} is not on order {order_id}")
            if quantity <= 0:
                raise ValueError(f"the quantity of {sku} to cancel must be more than 0, not {quantity}")
        # shipments whose units can still go: not yet packed, and no warehouse report waiting to be acted on
        open_ = [
            s for s in view.shipments if s.status in PARTLY_CANCELLABLE and not self._inbox.pending(s.id)
        ]
        open_ = [s for s in open_ if not (s.status == ShipmentStatus.allocated and s.released_at is not None)]
        open_.sort(key=lambda s: PARTLY_CANCELLABLE.index(s.status))
        open_ids = {s.id for s in open_}
        for sku, quantity in wanted.items():
            remains = sum(x.quantity for s in open_ for x in s.lines if x.sku == sku)
            if quantity > remains:
                gone = sorted(
                    {
                        f"{s.id} {s.status.value}"
                        for s in view.shipments
                        if s.id not in open_ids
                        and s.status not in DONE_WITH
                        and any(x.sku == sku for x in s.lines)
                    }
                )
                raise ValueError(
                    f"only {remains} x {sku} of order {order_id} can still be cancelled, not {quantity}"
                    + (
                        f" (the rest is packed, handed over or being reported on: {', '.join(gone)})"
                        if gone
                        else ""
                    )
                )
        everything = (
            all(s.id in open_ids or s.status in DONE_WITH for s in view.shipments)
            and {x.sku: x.quantity for x in _units_of(open_)} == wanted
        )
        if everything:
            self._validate_whole_cancel()
            return None
        plan: list[tuple[ShipmentView, list[ShipmentLine]]] = []
        left = dict(wanted)
        for shipment in open_:
            going = []
            for line in shipment.lines:
                if (n := min(left.get(line.sku, 0), line.quantity)) > 0:
                    going.append(ShipmentLine(sku=line.sku, quantity=n))
                    left[line.sku] -= n
            if going:
                plan.append((shipment, going))
        return plan

    def _validate_whole_cancel(self) -> None:
        view = self._ctx.view
        # a packed parcel can still be stopped until the warehouse hands it to the carrier
        if view.status not in CANCELLABLE or any(s.status in HANDED_OVER for s in view.shipments):
            raise ValueError(
                f"order {view.order_id} is {view.status.value} and can no longer be cancelled; "
                "once it has shipped, request a return instead"
            )

    @workflow.update(name=OrderUpdate.edit)
    async def edit(self, request: EditRequest) -> OrderView:
        """An order edit (issue 26): its lines (before release, workflows/line_edits.py), then the new
        shipping address, which goes on the orders row (the label is printed from it); the customer is
        told. After release, the address only, if every warehouse accepts, and a labelled parcel is
        relabelled (workflows/address_change.py). A refusal leaves the order as it was."""
        ctx = self._ctx
        late = self._released_to_warehouse()
        if late and (refusal := self._late_address.refusal()) is not None:  # a report came in meanwhile
            raise refuse_edit(refusal)
        self._editing = True  # before the first await: another edit, and the release, wait for this one
        self._edits += 1
        number = self._edits
        changes: list[str] = []
        try:
            if request.lines is not None and (change := await self._line_edits.apply(request, number)):
                changes.append(change)
            relabelled = []
            if request.shipping_address is not None:
                if late:
                    relabelled = await self._late_address.ask(request.shipping_address, number)
                changes.append(await self._edit_address(request))
            if changes:
                await ctx.notify(NotificationKind.order_edited, f"edited:{number}", change="; ".join(changes))
            await self._late_address.announce(relabelled)
        finally:
            self._editing = False
        return ctx.view

    async def _edit_address(self, request: EditRequest) -> str:
        ctx = self._ctx
        address = request.shipping_address
        assert address is not None
        edit = AddressEdit(order_id=ctx.order_id, address=address.model_dump(mode="json"))
        await ctx.step(OrderActivities.record_address_edit, edit, "record the new shipping address")
        order = ctx.request.order.model_copy(update={"shipping_address": address})
        ctx.request = ctx.request.model_copy(update={"order": order})
        ctx.view.shipping_city = address.city
        place = f"{address.city}, {address.country}"
        await ctx.event(OrderEventType.order_edited, f"shipping address now {place}{by_whom(request.by)}")
        return f"it will now be delivered to {address.name}, {address.line1}, {place}"

    @edit.validator
    def _validate_edit(self, request: EditRequest) -> None:
        ctx = self._ctx
        view = ctx.view
        if ctx.stop is not None or self._ended or view.status in ENDED:
            raise ValueError(f"order {view.order_id} is {view.status.value} and can no longer be edited")
        if self._editing:
            raise ValueError(f"order {view.order_id} has another edit under way: try again once it is done")
        if self._cancelling_lines:
            raise ValueError(
                f"order {view.order_id} has a partial cancellation under way: try again once it is done"
            )
        if self._released_to_warehouse():
            if request.lines is not None:
                raise ValueError(
                    f"order {view.order_id} was released to the warehouse: its lines can no longer be "
                    "changed (units not yet packed can still be cancelled)"
                )
            if (refusal := self._late_address.refusal()) is not None:
                raise ValueError(refusal)
            return  # the warehouses are asked (workflows/address_change.py)
        if view.status != OrderStatus.confirmed:
            raise ValueError(
                f"order {view.order_id} is {view.status.value}: only a confirmed order in its release "
                "window can be edited"
            )
        if request.lines is not None:
            self._line_edits.check(request)

    def _released_to_warehouse(self) -> bool:
        return self._legs is not None or any(s.released_at for s in self._ctx.view.shipments)

    async def _cancel_units(
        self, request: CancelRequest, plan: list[tuple[ShipmentView, list[ShipmentLine]]]
    ) -> None:
        """A partial cancellation: each shipment of the plan keeps the rest of its units and its amount
        less what the cancelled ones charge (their share of its goods and shipping, models/order_money.py),
        at once, before the first await (a report coming in meanwhile finds the shipment as it now is);
        then the stock goes back, the card's hold on them is released (a void of that part), and the
        customer is told."""
        ctx = self._ctx
        money_of = ctx.view.money()
        self._partial_cancels += 1
        self._cancelling_lines = True  # before the first await: an edit waits for this one
        try:
            await self._cancel_planned_units(request, plan, money_of)
        finally:
            self._cancelling_lines = False

    async def _cancel_planned_units(
        self,
        request: CancelRequest,
        plan: list[tuple[ShipmentView, list[ShipmentLine]]],
        money_of: OrderMoney,
    ) -> None:
        ctx = self._ctx
        value = Decimal(0)
        emptied: list[ShipmentView] = []
        for shipment, going in plan:
            cut = {x.sku: x.quantity for x in going}
            kept = [
                ShipmentLine(sku=x.sku, quantity=x.quantity - cut.get(x.sku, 0))
                for x in shipment.lines
                if x.quantity > cut.get(x.sku, 0)
            ]
            _, share = split(shipment.amount, [money_of.value_of(kept), money_of.value_of(going)])
            shipment.lines, shipment.amount = kept, shipment.amount - share
            if shipment.picked_lines:
                shipment.picked_lines = kept
            value += share
            if not kept:
                shipment.status = ShipmentStatus.cancelled  # its leg stops waiting for the warehouse
                emptied.append(shipment)
        for shipment, _ in plan:
            keep = KeepUnits(order_id=ctx.order_id, shipment_id=shipment.id, keep=shipment.lines)
            await ctx.step(
                InventoryActivities.keep_units, keep, f"return the cancelled units of {shipment.id}"
            )
        for shipment in emptied:
            await self._fulfilment.set_status(
                shipment, ShipmentStatus.cancelled, f"{shipment.id}: every unit cancelled"
            )
        if value > 0:  # never to be captured: the card's hold on it is released now, not at the end
            await release_hold(
                ctx,
                value,
                f"cancel:{self._partial_cancels}",
                "release the hold on the cancelled units",
                "the units cancelled will not be charged",
            )
        lines = [ShipmentLine(sku=x.sku, quantity=x.quantity) for x in request.lines or []]
        await lines_cancelled(
            ctx,
            lines,
            value,
            f"cancelled: {request.reason}{by_whom(request.by)}",
            ReasonCode.cancelled_by_support,
            key=f"lines_cancelled:request:{self._partial_cancels}",
            reason=request.reason,
        )

    @workflow.update(name=OrderUpdate.release)
    async def release(self, request: ReleaseRequest | None = None) -> OrderView:
        self._released_by = request.by if request else None
        self._released = True
        await workflow.wait_condition(lambda: self._ctx.view.status != OrderStatus.on_hold)
        return self._ctx.view

    @release.validator
    def _validate_release(self, request: ReleaseRequest | None = None) -> None:
        view = self._ctx.view
        if view.status != OrderStatus.on_hold or self._ctx.stop is not None:
            raise ValueError(f"order {view.order_id} is {view.status.value}, not on hold")

    @workflow.update(name=OrderUpdate.retry_reservation)
    async def retry_reservation(self) -> bool:
        """Stock arrived: try to reserve now; True when the order got its stock."""
        attempts = self._reserve_attempts
        self.stock_arrived = True
        legs = self._legs
        if legs is not None and self._reserved:  # units a warehouse was short of wait for stock
            tried = legs.backorder_attempts
            await workflow.wait_condition(
                lambda: legs.backorder_attempts > tried or self._ctx.stop is not None
            )
            return not any(s.status == ShipmentStatus.backordered for s in self._ctx.view.shipments)
        await workflow.wait_condition(
            lambda: self._reserve_attempts > attempts or self._reserved or self._ctx.stop is not None
        )
        return self._reserved

    @retry_reservation.validator
    def _validate_retry_reservation(self) -> None:
        view = self._ctx.view
        short = any(s.status == ShipmentStatus.backordered for s in view.shipments)
        if (
            view.status != OrderStatus.backordered
            or (self._reserved and not short)
            or self._ctx.stop is not None
        ):
            raise ValueError(f"order {view.order_id} is {view.status.value} and not waiting for stock")

    @workflow.update(name=OrderUpdate.request_return)
    async def request_return(self, request: ReturnRequest) -> ReturnView:
        return await self._returns.open(request)

    @request_return.validator
    def _validate_return(self, request: ReturnRequest) -> None:
        self._returns.validate(request)

    @workflow.update(name=OrderUpdate.customer_return)
    async def customer_return(self, request: CustomerReturnRequest) -> ReturnView:
        """The customer's return request: approved at once under its limit, else support decides."""
        return await self._returns.request_by_customer(request)

    @customer_return.validator
    def _validate_customer_return(self, request: CustomerReturnRequest) -> None:
        self._returns.validate_customer(request)

    @workflow.update(name=OrderUpdate.decide_return)
    async def decide_return(self, decision: ReturnDecision) -> ReturnView:
        return await self._returns.decide(decision)

    @decide_return.validator
    def _validate_decide_return(self, decision: ReturnDecision) -> None:
        self._returns.validate_decision(decision)

    @workflow.update(name=OrderUpdate.goodwill_refund)
    async def goodwill_refund(self, request: GoodwillRequest) -> GoodwillRefundView:
        """Support's goodwill refund: part of what was captured back to the card, with a reason code.
        The same key again (a retried request) answers with the first one's refund: money moves once."""
        ctx = self._ctx
        if request.key in self._goodwill_in_flight:  # the same request, already under way
            await workflow.wait_condition(lambda: request.key not in self._goodwill_in_flight)
        if (done := self._goodwill_done(request.key)) is not None:
            return done
        self._validate_goodwill_refund(request)  # again: another refund may have been accepted meanwhile
        # counted at once (before the first await): concurrent refunds can never over-refund
        self._goodwill_in_flight.add(request.key)
        ctx.payments.pending_refunds += request.amount
        try:
            result = await self._refund_goodwill(request)
            ctx.payments.book(result)
        finally:
            ctx.payments.pending_refunds -= request.amount
            self._goodwill_in_flight.discard(request.key)
        refund = GoodwillRefundView(
            key=request.key,
            amount=result.amount,
            currency=ctx.view.currency,
            reason=request.reason,
            note=request.note,
            reference=result.reference,
            by=request.by,
            at=workflow.now(),
        )
        ctx.view.goodwill_refunds.append(refund)
        await ctx.event(
            OrderEventType.goodwill_refund_issued,
            f"{money(result.amount, ctx.view.currency)} ({request.reason.value}"
            + (f": {request.note}" if request.note else "")
            + f"; {result.reference})"
            + by_whom(request.by),
            request.reason,
        )
        await ctx.notify(
            NotificationKind.goodwill_refund_issued,
            f"goodwill:{request.key}",
            amount=f"{result.amount:.2f}",
            currency=ctx.view.currency,
            why=GOODWILL_WHY[request.reason],
        )
        return refund

    async def _refund_goodwill(self, request: GoodwillRequest) -> PaymentResult:
        ctx = self._ctx
        payment = ctx.payment_request(f"goodwill:{request.key}", request.amount)
        try:
            result: PaymentResult = await ctx.step(
                PaymentActivities.refund_goodwill,
                payment,
                f"goodwill refund {money(request.amount, payment.currency)}",
            )
        except ActivityError as err:  # the ledger refused it (an invariant): nothing moved
            raise ApplicationError(
                f"goodwill refund refused: {business_refusal(err) or err.cause or err}",
                type=GOODWILL_INVALID,
                non_retryable=True,
            ) from err
        return result

    def _goodwill_done(self, key: str) -> GoodwillRefundView | None:
        return next((g for g in self._ctx.view.goodwill_refunds if g.key == key), None)

    @goodwill_refund.validator
    def _validate_goodwill_refund(self, request: GoodwillRequest) -> None:
        ctx = self._ctx
        view = ctx.view
        if request.key in self._goodwill_in_flight or self._goodwill_done(request.key) is not None:
            return  # the same request again: it gets the first one's answer
        if self._ended or ctx.stop is not None or view.status in ENDED:
            raise ApplicationError(
                f"order {view.order_id} is {view.status.value}: it takes no goodwill refund any more",
                type=GOODWILL_REFUSED,
                non_retryable=True,
            )
        if request.currency is not None and request.currency != view.currency:
            raise ApplicationError(
                f"order {view.order_id} was paid in {view.currency}, not {request.currency}",
                type=GOODWILL_INVALID,
                non_retryable=True,
            )
        if request.amount <= 0:
            raise ApplicationError(
                f"a goodwill refund must be more than 0, not {request.amount}",
                type=GOODWILL_INVALID,
                non_retryable=True,
            )
        if view.payment.captured <= 0:
            raise ApplicationError(
                f"nothing has been captured for order {view.order_id} yet ({view.status.value}): "
                "a goodwill refund gives back money taken; cancel the order instead, or wait until it ships",
                type=GOODWILL_REFUSED,
                non_retryable=True,
            )
        if trouble := [s.id for s in view.shipments if s.status == ShipmentStatus.exception]:
            raise ApplicationError(
                f"order {view.order_id} has a parcel in trouble ({', '.join(trouble)}): resolve it "
                "(reship or refund) before a goodwill refund",
                type=GOODWILL_REFUSED,
                non_retryable=True,
            )
        refundable = ctx.payments.refundable
        if request.amount > refundable:
            paid = view.payment
            raise ApplicationError(
                f"at most {money(max(refundable, Decimal(0)), view.currency)} of order {view.order_id} can be "
                f"refunded (captured {money(paid.captured, view.currency)}, refunded "
                f"{money(paid.refunded, view.currency)}"
                + (
                    f", {money(ctx.payments.pending_refunds, view.currency)} under way"
                    if ctx.payments.pending_refunds
                    else ""
                )
                + f"), not {money(request.amount, view.currency)}",
                type=GOODWILL_INVALID,
                non_retryable=True,
            )

    @workflow.signal(name=OrderSignal.return_received)
    def return_received(self, receipt: ReturnReceipt) -> None:
        self._returns.receive(receipt)

    @workflow.signal(name=OrderSignal.confirm_delivery)
    def confirm_delivery(self, confirmation: DeliveryConfirmation) -> None:
        """`deliver`: the shortcut for the carrier's `delivered` event (a delivered event of its own for a
        shipment that went through a warehouse and a carrier as parties)."""
        for shipment in self._ctx.view.shipments:
            if not (shipment.released_at and shipment.tracking_number):
                continue
            if (
                confirmation.shipment_id not in (None, shipment.id)
                or shipment.status != ShipmentStatus.shipped
            ):
                continue
            self._confirmations += 1
            event = CarrierEvent(
                tracking_number=shipment.tracking_number,
                type=CarrierEventType.delivered,
                event_id=f"confirmed-{self._confirmations}",
                at=workflow.now(),
                by=confirmation.by,
            )
            try:
                self._inbox.check_event(event)
            except ApplicationError:
                continue  # the carrier's own `delivered` (or another report) got there first
            self._inbox.accept_event(event)
        self._fulfilment.confirm_delivery(confirmation)

    # ---- warehouses and carriers as parties (workflows/parties.py) ----

    @workflow.update(name=OrderUpdate.warehouse_report)
    async def warehouse_report(self, report: WarehouseReport) -> ReportOutcome:
        """A warehouse's report: answers once the order has acted on it (what it did, in words)."""
        if self._editing:  # an edit under way is applied wholly before the report (address_change.py)
            await workflow.wait_condition(lambda: not self._editing)
            self._inbox.check_report(report)  # again: the order may have moved on meanwhile
        return await self._answer(*self._inbox.accept_report(report))

    @warehouse_report.validator
    def _validate_warehouse_report(self, report: WarehouseReport) -> None:
        self._require_fulfilling()
        self._inbox.check_report(report)

    @workflow.update(name=OrderUpdate.carrier_event)
    async def carrier_event(self, event: CarrierEvent) -> ReportOutcome:
        return await self._answer(*self._inbox.accept_event(event))

    @carrier_event.validator
    def _validate_carrier_event(self, event: CarrierEvent) -> None:
        self._require_fulfilling()
        self._inbox.check_event(event)

    @workflow.update(name=OrderUpdate.resolve_shipment)
    async def resolve_shipment(self, request: ResolveRequest) -> OrderView:
        await self._answer(*self._inbox.accept_resolution(request))
        return self._ctx.view

    @resolve_shipment.validator
    def _validate_resolve_shipment(self, request: ResolveRequest) -> None:
        self._require_fulfilling()
        self._inbox.check_resolution(request)

    async def _answer(self, shipment_id: str, key: str) -> ReportOutcome:
        """Once the shipment's leg has acted on an accepted report: what it did, in words."""
        await workflow.wait_condition(lambda: self._inbox.answered(shipment_id, key))
        if (refusal := self._inbox.refusal_of(shipment_id, key)) is not None:
            raise refuse_report(refusal)
        detail = self._inbox.answer_of(shipment_id, key)
        return ReportOutcome(order_id=self._ctx.order_id, shipment_id=shipment_id, detail=detail)

    def _require_fulfilling(self) -> None:
        if not self._fulfilling:
            raise refuse_report(
                f"order {self._ctx.order_id} is {self._ctx.view.status.value}: its shipments are not with a "
                "warehouse yet (it is released after the release window)"
            )

    @workflow.signal(name=OrderSignal.submit_feedback)
    async def submit_feedback(self, feedback: Feedback) -> None:
        # One feedback at a time: two stored at once land in the database in whichever order their
        # steps end, and the feedback row, the view and the last event could name different ones.
        async with self._feedback_lock:
            ctx = self._ctx
            ctx.view.feedback = FeedbackView(score=feedback.score, comment=feedback.comment)
            record = FeedbackRecord(order_id=ctx.order_id, score=feedback.score, comment=feedback.comment)
            await ctx.step(OrderActivities.record_feedback, record, "store the feedback")
            await ctx.event(
                OrderEventType.feedback_received,
                f"score {feedback.score}"
                + (f": {feedback.comment}" if feedback.comment else "")
                + by_whom(feedback.by),
            )

    @workflow.signal(name=OrderSignal.add_note)
    async def add_note(self, note: SupportNote) -> None:
        await self._ctx.event(OrderEventType.support_note, note.text + by_whom(note.by))


def _units_of(shipments: list[ShipmentView]) -> list[ShipmentLine]:
    """The shipments' units, a line per SKU."""
    units: dict[str, int] = {}
    for shipment in shipments:
        for x in shipment.lines:
            units[x.sku] = units.get(x.sku, 0) + x.quantity
    return [ShipmentLine(sku=sku, quantity=n) for sku, n in units.items()]
