"""Warehouses and carriers as parties of their own (models/fulfilment.py).

A shipment is released to its warehouse, which reports `picked`, `packed` and `handed_over` through
the order's `warehouse_report` update (or `packed` straight after the release, with the lines as for
`picked`: one confirmation of pick and pack, as many WMSs send it); the carrier then reports tracking events through
`carrier_event`. `Inbox` checks each report against the shipment's state (a duplicate or out-of-order
one is refused with the reason, changing nothing) and keeps it for the leg that waits for it; the
update answers once that leg has acted on it. `WarehouseLeg` runs release -> handover (short picks:
re-allocated, backordered or cancelled for those lines), `CarrierLeg` runs tracking -> delivery, or a
lost parcel -> support's choice (reship or refund).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Protocol

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.fulfilment import FulfilmentActivities
    from activities.inventory import InventoryActivities
    from activities.payments import PaymentActivities
    from models.events import OrderEventType, ReasonCode
    from models.fulfilment import (
        CarrierEvent,
        FulfilmentRequest,
        ReportRefusal,
        ResolveRequest,
        WarehouseReport,
        WarehouseStep,
    )
    from models.order_money import split
    from models.orders import ShipmentLine, ShipmentStatus, ShipmentTrouble, ShipmentView
    from models.shipping import (
        DELIVERY_ATTEMPTS,
        PARCEL_LOST,
        CarrierEventType,
        Resolution,
        ShortPickPolicy,
        TrackingEvent,
    )
    from models.steps import (
        ClaimRecord,
        NotificationKind,
        PackRecord,
        PickRecord,
        ReserveRequest,
        ShipmentRef,
        TrackingRecord,
    )
    from workflows.context import OrderContext
    from workflows.failures import business_refusal, invalid_data, shortage
    from workflows.fulfilment import Fulfilment, book_carrier, undo_pick, undo_reservation
    from workflows.journal import by_whom
    from workflows.payments import money
    from workflows.saga import Saga

# a warehouse report's place in the order of things
_AFTER = {
    WarehouseStep.picked: ShipmentStatus.released,
    WarehouseStep.packed: ShipmentStatus.picked,
    WarehouseStep.handed_over: ShipmentStatus.packed,
}
_DONE = {
    WarehouseStep.picked: {ShipmentStatus.picked, ShipmentStatus.packed},
    WarehouseStep.packed: {ShipmentStatus.packed},
}
_BEFORE_PICK = frozenset({ShipmentStatus.allocated, ShipmentStatus.released})
_ON_ITS_WAY = frozenset({ShipmentStatus.shipped, ShipmentStatus.delivered, ShipmentStatus.exception})


def _picks(report: WarehouseReport, shipment: ShipmentView) -> bool:
    """Whether the report confirms the pick: `picked`, or `packed` before any pick was reported."""
    return report.step == WarehouseStep.picked or (
        report.step == WarehouseStep.packed and shipment.status in _BEFORE_PICK
    )


def _release_under_way(shipment: ShipmentView) -> bool:
    """The pick list is being sent and the order has not seen the call return. A quick warehouse (or the
    sandbox one with no pick time) reports in that moment: its report shows the list arrived, so it is
    taken, and the leg acts on it as soon as the release step returns (its update answers then). It
    was refused as too early, and a third of the benchmark's orders waited a second to send it again."""
    return shipment.status == ShipmentStatus.allocated and shipment.released_at is not None


def _report_key(step: WarehouseStep) -> str:
    """Where a shipment's inbox keeps the answer to its report of `step` (its update waits for it)."""
    return f"report:{step.value}"


# How far ahead of the order's clock a carrier's event may be dated: clocks and zones differ (a local
# time sent without its offset reads as UTC), but not by days.
MAX_EVENT_AHEAD = timedelta(days=1)


def _check_event_time(event: CarrierEvent, shipment: ShipmentView) -> None:
    """An event is dated between the release of its shipment (a parcel cannot be scanned before its pick
    list went out) and a day from now; a delivery not before the handover. Anything else is a carrier's
    clock or data gone wrong, refused so that it cannot skew the order's story and cycle times.
    (Pickup scans may precede the warehouse's handover report: that is why only `delivered` is held to
    the handover.)"""
    at = event.at
    if shipment.released_at is not None and at < shipment.released_at:
        raise refuse_report(
            f"{event.tracking_number}: event dated {at:%Y-%m-%d %H:%M:%S} UTC, before {shipment.id} was released"
            f" ({shipment.released_at:%Y-%m-%d %H:%M:%S} UTC)"
        )
    if event.type == CarrierEventType.delivered and shipment.shipped_at and at < shipment.shipped_at:
        raise refuse_report(
            f"{event.tracking_number}: delivered dated {at:%Y-%m-%d %H:%M:%S} UTC, before it was handed over"
            f" ({shipment.shipped_at:%Y-%m-%d %H:%M:%S} UTC)"
        )
    if at > workflow.now() + MAX_EVENT_AHEAD:
        raise refuse_report(
            f"{event.tracking_number}: event dated {at:%Y-%m-%d %H:%M:%S} UTC, more than {MAX_EVENT_AHEAD} ahead"
        )


def refuse_report(reason: str) -> ApplicationError:
    """A report refused for good (duplicate, out of order, or the order is past it)."""
    return ApplicationError(reason, type=ReportRefusal.refused, non_retryable=True)


@dataclass
class ShipmentInbox:
    """Reports accepted for one shipment and not yet acted on, and the answers of those acted on."""

    reports: dict[WarehouseStep, WarehouseReport] = field(default_factory=dict)
    events: list[CarrierEvent] = field(default_factory=list)
    event_ids: set[str] = field(default_factory=set)
    resolution: ResolveRequest | None = None
    answers: dict[str, str] = field(default_factory=dict)  # report key -> what it did
    refusals: dict[str, str] = field(default_factory=dict)  # report key -> why it could not be recorded


class Inbox:
    def __init__(self, ctx: OrderContext) -> None:
        self._ctx = ctx
        self._boxes: dict[str, ShipmentInbox] = {}
        self.closed = False  # the order ended: no leg will act on anything more

    def box(self, shipment_id: str) -> ShipmentInbox:
        return self._boxes.setdefault(shipment_id, ShipmentInbox())

    def _shipment(self, shipment_id: str) -> ShipmentView:
        found = next((s for s in self._ctx.view.shipments if s.id == shipment_id), None)
        if found is None:
            raise refuse_report(f"shipment {shipment_id} is not part of order {self._ctx.order_id}")
        if self._ctx.stop is not None or self.closed:
            raise refuse_report(
                f"order {self._ctx.order_id} is {self._ctx.view.status.value}: nothing more to do"
            )
        return found

    # ---- checks (update validators: no side effects) ----

    def check_report(self, report: WarehouseReport) -> None:
        shipment = self._shipment(report.shipment_id)
        box, step = self.box(shipment.id), report.step
        if step in box.reports or shipment.status in _DONE.get(step, set()) or shipment.status in _ON_ITS_WAY:
            raise refuse_report(f"duplicate: {shipment.id} was already reported {step.value}")
        if shipment.status in (ShipmentStatus.cancelled, ShipmentStatus.resolved):
            raise refuse_report(f"{shipment.id} is {shipment.status.value}: nothing to {step.value}")
        picks = _picks(report, shipment)
        after = ShipmentStatus.released if picks else _AFTER[step]
        if shipment.status != after and not (picks and _release_under_way(shipment)):
            raise refuse_report(f"out of order: {shipment.id} is {shipment.status.value}, not {after.value}")
        if picks:
            ordered = {line.sku: line.quantity for line in shipment.lines}
            for line in report.lines:
                if line.sku not in ordered:
                    raise refuse_report(f"{line.sku} is not on the pick list of {shipment.id}")
                if line.quantity > ordered[line.sku]:
                    raise refuse_report(f"{line.sku}: {line.quantity} picked but {ordered[line.sku]} ordered")
            found = ordered | {line.sku: line.quantity for line in report.lines}
            if step == WarehouseStep.packed and not any(found.values()):
                raise refuse_report(f"packed {shipment.id} but picked nothing: report `picked` with no units")
        if step == WarehouseStep.packed and not report.parcels_g:
            raise refuse_report(f"packed {shipment.id} into no parcel: give each parcel's weight in grams")
        if step == WarehouseStep.handed_over and shipment.label_ref is None:
            raise ApplicationError(
                f"{shipment.id}: the label is not printed yet", type=ReportRefusal.too_early
            )

    def check_event(self, event: CarrierEvent) -> None:
        shipment = self._by_tracking(event.tracking_number)
        if event.event_id in self.box(shipment.id).event_ids:
            raise refuse_report(
                f"duplicate: event {event.event_id} of {event.tracking_number} was already reported"
            )
        if shipment.status == ShipmentStatus.delivered:
            raise refuse_report(f"out of order: {event.tracking_number} was already delivered")
        if shipment.status in (ShipmentStatus.exception, ShipmentStatus.resolved):
            raise refuse_report(
                f"{event.tracking_number} was reported {shipment.trouble}: its case is with support"
            )
        if shipment.status == ShipmentStatus.packed:
            # labelled and not yet reported handed over: the carrier may scan the parcel before the
            # warehouse's report comes in; it is taken once the order has the handover
            raise ApplicationError(
                f"{event.tracking_number} has not been handed over yet", type=ReportRefusal.too_early
            )
        if shipment.status != ShipmentStatus.shipped:
            raise refuse_report(f"out of order: {event.tracking_number} has not been handed over yet")
        _check_event_time(event, shipment)

    def check_resolution(self, request: ResolveRequest) -> None:
        shipment = self._shipment(request.shipment_id)
        if shipment.status != ShipmentStatus.exception or self.box(shipment.id).resolution is not None:
            raise refuse_report(
                f"{shipment.id} is {shipment.status.value}: there is no lost parcel to resolve"
            )

    def _by_tracking(self, tracking_number: str) -> ShipmentView:
        found = next((s for s in self._ctx.view.shipments if s.tracking_number == tracking_number), None)
        if found is None:
            raise refuse_report(
                f"no shipment of order {self._ctx.order_id} has tracking number {tracking_number}"
            )
        return self._shipment(found.id)

    # ---- accepting (update handlers) ----

    def accept_report(self, report: WarehouseReport) -> tuple[str, str]:
        box = self.box(report.shipment_id)
        if _picks(report, self._shipment(report.shipment_id)):
            box.reports[WarehouseStep.picked] = report  # a pack straight after release: the pick too
        box.reports[report.step] = report
        return report.shipment_id, _report_key(report.step)

    def accept_event(self, event: CarrierEvent) -> tuple[str, str]:
        shipment = self._by_tracking(event.tracking_number)
        box = self.box(shipment.id)
        box.event_ids.add(event.event_id)
        box.events.append(event)
        key = f"event:{event.event_id}"
        box.refusals.pop(key, None)  # sent again after a refusal: this one gets its own answer
        return shipment.id, key

    def accept_resolution(self, request: ResolveRequest) -> tuple[str, str]:
        self.box(request.shipment_id).resolution = request
        return request.shipment_id, "resolution"

    def pending(self, shipment_id: str) -> bool:
        """A report of the shipment was accepted and its leg has not acted on it yet."""
        box = self.box(shipment_id)
        return any(
            _report_key(step) not in box.answers and _report_key(step) not in box.refusals
            for step in box.reports
        )

    def answered(self, shipment_id: str, key: str) -> bool:
        box = self.box(shipment_id)
        return key in box.answers or key in box.refusals or self.closed

    def refusal_of(self, shipment_id: str, key: str) -> str | None:
        """Why an accepted report could not be recorded after all (its sender is told), else None."""
        return self.box(shipment_id).refusals.get(key)

    def answer_of(self, shipment_id: str, key: str) -> str:
        return self.box(shipment_id).answers.get(key, f"order {self._ctx.order_id} ended before acting on it")


async def lines_cancelled(
    ctx: OrderContext,
    lines: list[ShipmentLine],
    value: Decimal,
    why: str,
    code: ReasonCode | None = None,
    key: str | None = None,
    reason: str | None = None,
) -> None:
    """Lines of the order will not be sent and `value` of them not charged: the story's event and the
    customer's message. With `reason`, support cancelled them on request (a partial cancellation, its
    own message); else the warehouse could not find them. `key`: the message's, unique to the order."""
    await ctx.event(
        OrderEventType.lines_cancelled,
        f"{_lines(lines)}: {why}; {money(value, ctx.view.currency)} not charged",
        code,
    )
    lines_, value_ = _lines(lines), f"{money(value, ctx.view.currency)} released on your card"
    if reason is None:
        await ctx.notify(
            NotificationKind.lines_cancelled, key or f"lines_cancelled:{why}", lines=lines_, money=value_
        )
    else:
        await ctx.notify(
            NotificationKind.lines_cancelled_by_request,
            key or f"lines_cancelled:{why}",
            lines=lines_,
            money=value_,
            reason=reason,
        )


class OrderHooks(Protocol):
    """What the legs ask of the order they run for (OrderWorkflow answers)."""

    # stock was received since the legs last looked (`retry_reservation` sets it; a backorder clears it
    # before each try)
    stock_arrived: bool

    def spawn(self, shipment: ShipmentView) -> None:
        """Run the legs of a shipment made on the way (re-allocated, backordered or reshipped units)
        alongside the others."""
        ...


class Legs:
    """Both legs of a shipment's journey, with what they share: the inbox, the saga, the shipments'
    bookkeeping (`Fulfilment`: their status, the capture, an overdue delivery), and the order they
    run for (`OrderHooks`: how a new shipment joins, whether stock arrived)."""

    def __init__(
        self, ctx: OrderContext, inbox: Inbox, saga: Saga, fulfilment: Fulfilment, order: OrderHooks
    ) -> None:
        self._ctx, self._inbox, self._saga = ctx, inbox, saga
        self._fulfilment, self._order = fulfilment, order
        self._backorders = 0
        self.backorder_attempts = 0  # tries to reserve backordered units (`retry_reservation` waits for one)

    # ---- the warehouse ----

    async def warehouse(self, shipment: ShipmentView) -> bool:
        """Release -> picked -> packed (label) -> handed over (capture). False: nothing left to send
        (every unit short, or cancelled by a partial cancellation while it waited for the warehouse)."""
        try:
            return await self._warehouse(shipment)
        except _Withdrawn:
            return False

    async def _warehouse(self, shipment: ShipmentView) -> bool:
        ctx, box = self._ctx, self._inbox.box(shipment.id)
        ref = ShipmentRef(order_id=ctx.order_id, shipment_id=shipment.id)
        ctx.checkpoint()
        shipment.released_at = workflow.now()
        request = FulfilmentRequest(
            order_id=ctx.order_id,
            shipment_id=shipment.id,
            warehouse=shipment.warehouse,
            lines=shipment.lines,
            released_at=shipment.released_at,
        )
        await ctx.step(
            FulfilmentActivities.release_shipment, request, f"release {shipment.id} to {shipment.warehouse}"
        )
        await self._fulfilment.set_status(
            shipment, ShipmentStatus.released, f"{shipment.id}: pick list sent to {shipment.warehouse}"
        )

        picked = await self._report(box, WarehouseStep.picked, shipment)
        undo_pick(self._saga, ctx, shipment.id)
        found = {line.sku: line.quantity for line in picked.report.lines}
        outcome = await ctx.step(
            InventoryActivities.record_pick,
            PickRecord(order_id=ctx.order_id, shipment_id=shipment.id, ordered=shipment.lines, found=found),
            f"book the pick of {shipment.id}",
        )
        shipment.picked_lines = outcome.picked
        detail = f"{shipment.id}: {_units(outcome.picked)} picked in {shipment.warehouse}{by_whom(picked.report.by)}"
        if outcome.missing:
            # what the missing units charge, out of this shipment's amount (its shipping share goes
            # with them in proportion): kept and moved add up to what the shipment charged
            _, value = split(shipment.amount, [self._value(outcome.picked), self._value(outcome.missing)])
            shipment.lines, shipment.amount = outcome.picked, shipment.amount - value
            detail += f"; short: {_lines(outcome.missing)}, " + await self._short(
                shipment, outcome.missing, value
            )
        # a pack that confirmed the pick too answers once, for both (its update waits for `packed`)
        packed_too = box.reports.get(WarehouseStep.packed) is picked.report
        if not outcome.picked:
            await self._fulfilment.set_status(
                shipment, ShipmentStatus.cancelled, detail + f"; nothing left to send in {shipment.id}"
            )
            picked.answer(detail)
            if packed_too:
                _Pending(box, _report_key(WarehouseStep.packed), picked.report).answer(detail)
            return False
        await self._fulfilment.set_status(shipment, ShipmentStatus.picked, detail)
        picked.answer(detail)

        packed = await self._report(box, WarehouseStep.packed, shipment)
        pack = await ctx.step(
            FulfilmentActivities.record_pack,
            PackRecord(order_id=ctx.order_id, shipment_id=shipment.id, parcels_g=packed.report.parcels_g),
            f"record the parcels of {shipment.id}",
        )
        shipment.weight_g, shipment.parcels_g = pack.weight_g, list(packed.report.parcels_g)
        parcels = len(shipment.parcels_g)
        await self._fulfilment.set_status(
            shipment,
            ShipmentStatus.packed,
            f"{shipment.id}: {parcels} parcel{'s' * (parcels != 1)}, {pack.weight_g} g",
        )
        label = await book_carrier(
            ctx,
            self._saga,
            shipment,
            pack.weight_g,
            FulfilmentActivities.book_carrier,
            track=True,  # the carrier reports on the parcel from its label on, as real carriers do
        )
        shipment.carrier, shipment.tracking_number = label.carrier, label.tracking_number
        shipment.label_ref = label.label_ref
        await ctx.event(
            OrderEventType.label_printed,
            f"{shipment.id}: {label.carrier} {label.tracking_number} ({label.label_ref})",
        )
        packed.answer(
            (f"{detail}; " if packed_too else "")
            + f"{shipment.id} packed; label {label.label_ref}, tracking {label.tracking_number}"
        )

        handed = await self._report(box, WarehouseStep.handed_over, shipment)
        handover = await ctx.step(
            FulfilmentActivities.record_handover, ref, f"hand {shipment.id} to the carrier"
        )
        shipment.shipped_at = handover.shipped_at
        if shipment.amount > 0:
            await self._fulfilment.capture(shipment, self._saga)
        detail = (
            f"{shipment.id} with {label.carrier}, tracking {label.tracking_number}{by_whom(handed.report.by)}"
        )
        await self._fulfilment.set_status(shipment, ShipmentStatus.shipped, detail)
        handed.answer(detail)
        return True

    async def _report(self, box: ShipmentInbox, step: WarehouseStep, shipment: ShipmentView) -> _Pending:
        ctx = self._ctx
        withdrawn = lambda: shipment.status == ShipmentStatus.cancelled  # noqa: E731
        await workflow.wait_condition(lambda: step in box.reports or ctx.stop is not None or withdrawn())
        ctx.checkpoint()
        if withdrawn() and step not in box.reports:
            raise _Withdrawn
        return _Pending(box, _report_key(step), box.reports[step])

    async def _short(self, shipment: ShipmentView, missing: list[ShipmentLine], value: Decimal) -> str:
        """Units the warehouse did not find: from another warehouse, else backordered (policy and stock on
        order permitting), else those lines are cancelled and not charged. Says which."""
        ctx = self._ctx
        try:
            moved = await self._reserve(
                missing,
                f"re-allocate what {shipment.id} was short",
                value=value,
                take_last=[shipment.warehouse],
            )
        except _OutOfStock as short:
            if ctx.policy.short_pick == ShortPickPolicy.backorder and short.on_order:
                self._backorders += 1
                placeholder = ShipmentView(
                    id=f"{ctx.order_id}-B{self._backorders}",
                    warehouse="",
                    status=ShipmentStatus.backordered,
                    lines=missing,
                    amount=value,
                    replaces=shipment.id,
                )
                ctx.view.shipments.append(placeholder)
                self._order.spawn(placeholder)
                return f"backordered as {placeholder.id} (on order)"
            await self._cancel_lines(missing, value, f"short pick of {shipment.id}")
            return "those lines cancelled"
        for new in moved:
            new.replaces = shipment.id
        return "re-allocated to " + ", ".join(f"{s.id} ({s.warehouse})" for s in moved)

    async def backorder(self, placeholder: ShipmentView) -> None:
        """Wait for stock on order (as a backordered order does), then send what arrived as new shipments;
        past the backorder timeout those lines are cancelled."""
        ctx = self._ctx
        deadline = workflow.now() + ctx.policy.backorder_timeout
        asked = False  # for a replenishment of the short SKUs (once)
        while True:
            self._order.stock_arrived = False
            await ctx.written()  # the orders row shows the backorder first: no receipt falls in between
            try:
                await self._reserve(
                    placeholder.lines,
                    f"reserve backordered {placeholder.id}",
                    placeholder.id,
                    placeholder.amount,
                )
            except _OutOfStock:
                self.backorder_attempts += 1
                if not asked:
                    asked = True
                    await ctx.ask_for_backordered_stock([line.sku for line in placeholder.lines])
            else:
                self.backorder_attempts += 1
                await self._fulfilment.set_status(
                    placeholder, ShipmentStatus.resolved, f"{placeholder.id}: stock arrived"
                )
                return
            try:
                await workflow.wait_condition(
                    lambda: self._order.stock_arrived or ctx.stop is not None,
                    timeout=max(deadline - workflow.now(), timedelta(seconds=1)),
                    timeout_summary=f"backorder timeout of {placeholder.id}",
                )
            except TimeoutError:
                await self._cancel_lines(
                    placeholder.lines, placeholder.amount, f"still out of stock ({placeholder.id})"
                )
                await self._fulfilment.set_status(
                    placeholder, ShipmentStatus.cancelled, f"{placeholder.id}: lines cancelled"
                )
                return
            ctx.checkpoint()

    async def _reserve(
        self,
        lines: list[ShipmentLine],
        summary: str,
        replaces: str | None = None,
        value: Decimal = Decimal("0"),
        take_last: list[str] | None = None,
    ) -> list[ShipmentView]:
        """Reserve `lines` as new shipments of this order (released at once: no second window), which
        share `value` (what those lines charge) between them. A reship is not charged again (value 0):
        the customer paid with the parcel that was lost.
        `take_last`: warehouses to use only if no other has the units (ReserveRequest)."""
        ctx = self._ctx
        numbers = [
            int(s.id.rpartition("-S")[2]) for s in ctx.view.shipments if s.id.rpartition("-S")[2].isdigit()
        ]
        request = ReserveRequest(
            order_id=ctx.order_id,
            shipment_prefix=f"{ctx.order_id}-S",
            lines=lines,
            numbers_from=max(numbers, default=0) + 1,
            take_last=take_last or [],
        )
        try:
            allocated = await ctx.step(InventoryActivities.reserve_stock, request, summary)
        except ActivityError as err:
            if business_refusal(err) is None:
                raise
            found = shortage(err)
            on_order = found.get("on_order", {})
            raise _OutOfStock(bool(on_order) and set(found.get("short", [])) <= set(on_order)) from None
        made = []
        amounts = split(value, [self._value(a.lines) for a in allocated])
        for a, amount in zip(allocated, amounts, strict=True):
            new = ShipmentView(
                id=a.id, warehouse=a.warehouse, lines=a.lines, amount=amount, replaces=replaces
            )
            ctx.view.shipments.append(new)
            undo_reservation(self._saga, ctx, new.id)
            made.append(new)
            self._order.spawn(new)
        await ctx.event(OrderEventType.stock_reserved, ", ".join(f"{s.id} from {s.warehouse}" for s in made))
        return made

    async def _cancel_lines(self, lines: list[ShipmentLine], value: Decimal, why: str) -> None:
        await lines_cancelled(self._ctx, lines, value, why)

    def _value(self, lines: list[ShipmentLine]) -> Decimal:
        """What `lines` charge, unrounded: the weight by which an amount is split (models/order_money.py)."""
        return self._ctx.view.money().value_of(lines)

    # ---- the carrier ----

    async def carrier(self, shipment: ShipmentView) -> None:
        """Tracking events until the parcel is delivered, or lost and settled by support's choice."""
        ctx, box = self._ctx, self._inbox.box(shipment.id)
        assert shipment.shipped_at is not None
        due = shipment.shipped_at + ctx.policy.delivery_sla
        overdue = False
        while shipment.status == ShipmentStatus.shipped:
            if not box.events:
                try:
                    await workflow.wait_condition(
                        lambda: bool(box.events) or ctx.stop is not None,
                        timeout=None if overdue else max(due - workflow.now(), timedelta(seconds=1)),
                        timeout_summary=f"delivery SLA for {shipment.id}",
                    )
                except TimeoutError:
                    overdue = True
                    await self._fulfilment.flag_overdue(shipment)
                    continue
            if ctx.stop is not None:
                return
            event = box.events.pop(0)
            await self._track(shipment, box, event)
        if shipment.status == ShipmentStatus.exception:
            await self._settle_lost(shipment, box)

    async def _track(self, shipment: ShipmentView, box: ShipmentInbox, event: CarrierEvent) -> None:
        ctx = self._ctx
        status, (trouble, kind), attempts = _after_event(shipment, event)
        detail = f"{shipment.id}: {event.type.value}" + (f" at {event.place}" if event.place else "")
        if event.type == CarrierEventType.delivery_failed:
            detail += f" (attempt {attempts} of {DELIVERY_ATTEMPTS})"
        record = TrackingRecord(
            order_id=ctx.order_id,
            shipment_id=shipment.id,
            tracking_number=event.tracking_number,
            event_id=event.event_id,
            type=event.type.value,
            at=event.at,
            place=event.place,
            shipment_status=status.value if status else None,
        )
        key = f"event:{event.event_id}"
        try:
            await ctx.step(
                FulfilmentActivities.record_tracking_event,
                record,
                f"{event.type.value} {event.tracking_number}",
            )
        except ActivityError as err:
            if (reason := invalid_data(err)) is None:
                raise
            # Refused to the carrier (its update's answer), and the parcel carries on as before: an event
            # that can never be stored must not hold up the ones behind it.
            box.event_ids.discard(event.event_id)
            box.refusals[key] = f"event {event.event_id} of {event.tracking_number} not recorded: {reason}"
            await ctx.event(
                OrderEventType.carrier_event_refused,
                f"{shipment.id}: {box.refusals[key]}",
                ReasonCode.invalid_data,
            )
            return
        shipment.tracking.append(
            TrackingEvent(
                type=event.type,
                at=event.at,
                place=event.place,
                event_id=event.event_id,
                attempt=event.attempt,
            )
        )
        shipment.trouble, shipment.trouble_kind, shipment.delivery_attempts = trouble, kind, attempts
        if status == ShipmentStatus.delivered:
            shipment.delivered_at = event.at
        # a scan that moved the parcel on is its new status's event; one that did not is a scan's own
        scan = None if status else OrderEventType.of_scan(event.type)
        await self._fulfilment.set_status(
            shipment, status or shipment.status, detail + by_whom(event.by), event_type=scan
        )
        box.answers[key] = detail

    async def _settle_lost(self, shipment: ShipmentView, box: ShipmentInbox) -> None:
        """A parcel lost or coming back: support chooses reship or refund; none within the exception
        timeout is a refund. Either way a claim goes to the carrier."""
        ctx = self._ctx
        deadline = workflow.now() + ctx.policy.exception_timeout
        await ctx.notify(
            NotificationKind.parcel_lost,
            f"lost:{shipment.id}",
            to_support=True,
            shipment_id=shipment.id,
            trouble=shipment.trouble or "lost",
            carrier=shipment.carrier or "",
            tracking_number=shipment.tracking_number or "",
            deadline=f"{deadline:%Y-%m-%d %H:%M} UTC",
        )
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: box.resolution is not None or ctx.stop is not None,
                timeout=ctx.policy.exception_timeout,
                timeout_summary=f"support's choice for {shipment.id}",
            )
        if ctx.stop is not None and box.resolution is None:
            return
        choice, who = (
            (box.resolution.resolution, box.resolution.by) if box.resolution else (Resolution.refund, None)
        )
        reason = (
            "returned_to_sender" if shipment.trouble_kind == ShipmentTrouble.returned_to_sender else "lost"
        )
        claim = ClaimRecord(
            order_id=ctx.order_id,
            shipment_id=shipment.id,
            tracking_number=shipment.tracking_number,
            reason=reason,
            amount=shipment.amount,
        )
        await ctx.step(
            FulfilmentActivities.record_claim, claim, f"claim {shipment.id} with {shipment.carrier}"
        )
        ref = ShipmentRef(order_id=ctx.order_id, shipment_id=shipment.id)
        if reason == "returned_to_sender":
            await ctx.step(InventoryActivities.restock_returned, ref, f"restock returned {shipment.id}")
        detail = ""
        if choice == Resolution.reship:
            try:
                new = await self._reserve(shipment.lines, f"reship {shipment.id}", shipment.id)
                detail = "reshipped as " + ", ".join(s.id for s in new)
                await ctx.notify(
                    NotificationKind.parcel_reshipped,
                    f"reshipped:{shipment.id}",
                    shipment_id=shipment.id,
                    trouble=shipment.trouble or "lost",
                    new_shipments=", ".join(s.id for s in new),
                )
            except _OutOfStock:
                choice, detail = Resolution.refund, "nothing in stock to reship: refunded instead; "
        if choice == Resolution.refund:
            detail += await self._refund_parcel(shipment)
        shipment.resolution = choice
        if not box.resolution:
            chosen = f"no choice within {ctx.policy.exception_timeout}"
        else:
            chosen = f"chosen by {who}" if who else "chosen"
        await self._fulfilment.set_status(
            shipment,
            ShipmentStatus.resolved,
            f"{shipment.id}: {detail} ({chosen})",
            None if box.resolution else ReasonCode.exception_timeout,
        )
        box.answers["resolution"] = detail

    async def _refund_parcel(self, shipment: ShipmentView) -> str:
        ctx = self._ctx
        if shipment.amount <= 0:
            return "nothing was charged for it"
        refund = ctx.payment_request(f"refund:lost:{shipment.id}", shipment.amount)
        ctx.payments.book(
            await ctx.step(
                PaymentActivities.refund_payment, refund, f"refund {money(refund.amount, refund.currency)}"
            )
        )
        await ctx.notify(
            NotificationKind.parcel_refunded,
            f"refunded:{shipment.id}",
            shipment_id=shipment.id,
            trouble=shipment.trouble or "lost",
            money=money(shipment.amount, ctx.view.currency),
        )
        return f"refunded {money(shipment.amount, ctx.view.currency)}"


_NO_TROUBLE: tuple[str | None, ShipmentTrouble | None] = (None, None)
# a parcel the carrier reports lost or returned (PARCEL_LOST) -> its trouble
_LOST_KIND = {
    CarrierEventType.lost: ShipmentTrouble.lost_parcel,
    CarrierEventType.returned_to_sender: ShipmentTrouble.returned_to_sender,
}


def _after_event(
    shipment: ShipmentView, event: CarrierEvent
) -> tuple[ShipmentStatus | None, tuple[str | None, ShipmentTrouble | None], int]:
    """What a tracking event makes of its shipment: (new status or None, (trouble as support reads it,
    trouble as a type), delivery attempts)."""
    attempts, trouble = shipment.delivery_attempts, (shipment.trouble, shipment.trouble_kind)
    if event.type == CarrierEventType.delivered:
        return ShipmentStatus.delivered, _NO_TROUBLE, attempts
    if event.type == CarrierEventType.delivery_failed:
        attempts = max(attempts + 1, event.attempt or 0)
        if attempts >= DELIVERY_ATTEMPTS:
            return (
                ShipmentStatus.exception,
                (
                    f"{DELIVERY_ATTEMPTS} failed delivery attempts: coming back",
                    ShipmentTrouble.returned_to_sender,
                ),
                attempts,
            )
        return None, trouble, attempts
    if event.type in PARCEL_LOST:
        kind = _LOST_KIND.get(event.type, ShipmentTrouble.lost_parcel)
        return ShipmentStatus.exception, (event.type.value.replace("_", " "), kind), attempts
    if event.type == CarrierEventType.exception:
        return None, (event.place or "held up", ShipmentTrouble.held_up), attempts
    return None, _NO_TROUBLE, attempts  # in transit, out for delivery: on its way again


@dataclass
class _Pending:
    """A report the leg is acting on; `answer` lets its update return."""

    box: ShipmentInbox
    key: str
    report: WarehouseReport

    def answer(self, detail: str) -> None:
        self.box.answers[self.key] = detail


class _Withdrawn(Exception):
    """Every unit of the shipment was cancelled (a partial cancellation) while it waited for a report."""


class _OutOfStock(Exception):
    def __init__(self, on_order: bool) -> None:
        super().__init__("out of stock")
        self.on_order = on_order


def _units(lines: list[ShipmentLine]) -> str:
    units = sum(x.quantity for x in lines)
    return f"{units} unit{'s' * (units != 1)}"


def _lines(lines: list[ShipmentLine]) -> str:
    return ", ".join(f"{x.quantity} x {x.sku}" for x in lines)
