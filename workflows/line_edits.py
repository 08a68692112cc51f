"""Line edits before release (issue 26): add a line, remove one, change a quantity.

The order's units become what the edit names (a SKU it does not name keeps its units; 0 removes it).
In this order, so that a refusal moves nothing:
1. new SKUs are priced from the catalog, and every line re-priced (models/edited_lines.py);
2. the units added are reserved, as a shipment of their own per warehouse (continuing the order's
   numbering); out of stock refuses the edit;
3. the hold on the card grows by the difference (an incremental authorization) when the total rose;
   a decline releases what step 2 reserved and refuses the edit;
4. the units removed are released (`keep_units`, as a partial cancellation does), each shipment's
   amount is shared out again from the new total, and the hold shrinks by the difference (a void of
   part of it) when the total fell;
5. the orders row and its lines are written, the story tells it, the customer is told.

Only in the release window: nothing has been captured, so every shipment's amount is still to be
charged and the hold equals their sum.
"""

from __future__ import annotations

from decimal import Decimal

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.inventory import InventoryActivities
    from activities.orders import OrderActivities
    from activities.payments import PaymentActivities
    from activities.replenishment import ReplenishmentActivities
    from models import search_attributes as sa
    from models.edited_lines import LineEditInvalid, edited_lines
    from models.events import OrderEventType
    from models.order_money import shipment_amounts
    from models.orders import (
        MAX_MONEY,
        EditRequest,
        PricedLine,
        ShipmentLine,
        ShipmentStatus,
        ShipmentView,
        repeated_skus,
    )
    from models.steps import (
        KeepUnits,
        LineEditRecord,
        PriceRequest,
        ReserveRequest,
        ShipmentRef,
    )
    from workflows.context import OrderContext
    from workflows.failures import business_refusal
    from workflows.fulfilment import Fulfilment, undo_reservation
    from workflows.journal import by_whom
    from workflows.payments import money
    from workflows.saga import Saga

# The update's failure types: the order is in no state for it, or nothing moved because the world
# said no (stock, the card) -> 409; the edit itself cannot be granted (a SKU, the bounds) -> 422.
EDIT_REFUSED = "EditRefused"
EDIT_INVALID = "EditInvalid"


def refused(reason: str) -> ApplicationError:
    return ApplicationError(reason, type=EDIT_REFUSED, non_retryable=True)


def invalid(reason: str) -> ApplicationError:
    return ApplicationError(reason, type=EDIT_INVALID, non_retryable=True)


async def release_hold(ctx: OrderContext, amount: Decimal, key: str, summary: str, why: str) -> None:
    """Void `amount` of the card's hold now (a void of part of it: it will never be captured), and say
    so in the story. `key`: the void's, unique to the order."""
    void = ctx.payment_request(f"void:{key}", amount, card=True)
    ctx.payments.book(await ctx.step(PaymentActivities.void_part, void, summary))
    await ctx.event(
        OrderEventType.authorization_released, f"{money(amount, void.currency)} of the hold: {why}"
    )


class LineEdits:
    def __init__(self, ctx: OrderContext, saga: Saga, fulfilment: Fulfilment) -> None:
        self._ctx = ctx
        self._saga = saga
        self._fulfilment = fulfilment
        self._placed: list[PricedLine] | None = None  # the lines as placed and priced (at the first edit)

    def check(self, request: EditRequest) -> None:
        """The validator's part: refuses (EDIT_INVALID) what is wrong whatever the catalog and the stock."""
        if problem := repeated_skus(x.sku for x in request.lines or []):
            raise invalid(problem)  # the door says so first; this is for callers of the update itself
        wanted = self._ctx.view.units() | {x.sku: x.quantity for x in request.lines or []}
        if not any(wanted.values()):
            raise invalid(
                f"an edit cannot remove every line of order {self._ctx.order_id}: cancel the order instead"
            )

    async def apply(self, request: EditRequest, number: int) -> str | None:
        """Apply the edit's lines; what changed, in words (None: the lines already were so). Raises
        ApplicationError (EDIT_REFUSED, EDIT_INVALID) with nothing moved."""
        ctx, view = self._ctx, self._ctx.view
        live = view.units()
        wanted = live | {x.sku: x.quantity for x in request.lines or []}
        if {s: n for s, n in wanted.items() if n} == live:
            return None
        lines = await self._price(wanted)
        before = ctx.payments.held  # what the shipments are to charge: nothing is captured before release
        edited = view.money().with_lines(x.money() for x in lines)
        total = edited.total
        if total > MAX_MONEY:
            raise invalid(f"the edited total {money(total, view.currency)} is more than an order can be")
        more = [
            ShipmentLine(sku=s, quantity=n - live.get(s, 0)) for s, n in wanted.items() if n > live.get(s, 0)
        ]
        added = await self._reserve(more) if more else []
        if total > before:
            await self._hold_more(total - before, number, added)
        for shipment in added:
            undo_reservation(self._saga, ctx, shipment.id)
        # the units that go: from the last shipments first (those added by edits before this one)
        fewer = {s: live[s] - wanted.get(s, 0) for s in live if live[s] > wanted.get(s, 0)}
        cut = _cut(view.shipments, fewer)
        view.shipments.extend(added)
        view.lines = lines
        view.subtotal, view.discounts, view.tax, view.total = (
            edited.subtotal,
            edited.discounts,
            edited.tax,
            edited.total,
        )
        live_shipments = [s for s in view.shipments if s.status != ShipmentStatus.cancelled]
        for shipment, amount in zip(
            live_shipments, shipment_amounts(edited, [s.lines for s in live_shipments]), strict=True
        ):
            shipment.amount = amount
        ctx.upsert(sa.ORDER_TOTAL.value_set(float(total)))
        for shipment in cut:
            keep = KeepUnits(
                order_id=ctx.order_id, shipment_id=shipment.id, keep=shipment.lines, why="edited"
            )
            await ctx.step(
                InventoryActivities.keep_units, keep, f"release the units edited out of {shipment.id}"
            )
            if not shipment.lines:
                await self._fulfilment.set_status(
                    shipment, ShipmentStatus.cancelled, f"{shipment.id}: every unit edited out"
                )
        if total < before:
            await release_hold(
                ctx,
                before - total,
                f"edit:{number}",
                "release the hold the edit freed",
                "the edit lowered the total",
            )
        record = LineEditRecord(
            order_id=ctx.order_id,
            lines=lines,
            subtotal=view.subtotal or Decimal(0),
            discounts=view.discounts or Decimal(0),
            tax=view.tax or Decimal(0),
            total=total,
        )
        await ctx.step(OrderActivities.record_line_edit, record, "record the edited lines")
        if added:
            await ctx.event(
                OrderEventType.stock_reserved, ", ".join(f"{s.id} from {s.warehouse}" for s in added)
            )
        change = (
            f"it now holds {_units(lines)}; the total is {money(total, view.currency)} "
            f"(was {money(before, view.currency)})"
        )
        await ctx.event(
            OrderEventType.order_edited,
            f"lines now {_units(lines)}; total {money(before, view.currency)} -> {money(total, view.currency)}"
            + by_whom(request.by),
        )
        return change

    async def _price(self, wanted: dict[str, int]) -> list[PricedLine]:
        """The order's lines as the edit makes them; a SKU the order never had is priced first."""
        ctx, view = self._ctx, self._ctx.view
        if self._placed is None:  # edits replace view.lines: keep the placed ones' prices
            self._placed = list(view.lines)
        known = self._placed + view.lines
        on_order = {x.sku for x in known}
        added: dict[str, PricedLine] = {}
        for sku, quantity in wanted.items():
            if quantity and sku not in on_order:
                try:
                    added[sku] = await ctx.step(
                        OrderActivities.price_sku,
                        PriceRequest(sku=sku, currency=view.currency),
                        f"price {sku}",
                    )
                except ActivityError as err:
                    if (reason := business_refusal(err)) is None:
                        raise
                    raise invalid(f"cannot add {sku}: {reason}") from None
        try:
            return edited_lines(known, ctx.request.order.lines, wanted, added, view.taxes_included)
        except LineEditInvalid as exc:
            raise invalid(str(exc)) from None

    async def _reserve(self, more: list[ShipmentLine]) -> list[ShipmentView]:
        ctx = self._ctx
        numbers = [int(n) for s in ctx.view.shipments if (n := s.id.rpartition("-S")[2]).isdigit()]
        request = ReserveRequest(
            order_id=ctx.order_id,
            shipment_prefix=f"{ctx.order_id}-S",
            lines=more,
            numbers_from=max(numbers, default=0) + 1,
        )
        try:
            allocated = await ctx.step(InventoryActivities.reserve_stock, request, "reserve the units added")
        except ActivityError as err:
            if (reason := business_refusal(err)) is None:
                raise
            raise refused(f"the edit needs {_units(more)} more: {reason}") from None
        if low := [key for a in allocated for key in a.low_stock]:
            await ctx.step(ReplenishmentActivities.replenish_if_low, low, "replenish what runs low")
        return [ShipmentView(id=a.id, warehouse=a.warehouse, lines=a.lines) for a in allocated]

    async def _hold_more(self, amount: Decimal, number: int, added: list[ShipmentView]) -> None:
        """The card holds `amount` more; declined: the units reserved for the edit go back, and the edit
        is refused."""
        ctx = self._ctx
        increment = ctx.payment_request(f"increment:edit:{number}", amount, card=True)
        try:
            result = await ctx.step(
                PaymentActivities.increment_authorization,
                increment,
                f"hold {money(amount, increment.currency)} more",
            )
        except ActivityError as err:
            if (reason := business_refusal(err)) is None:
                raise
            for shipment in added:
                ref = ShipmentRef(order_id=ctx.order_id, shipment_id=shipment.id)
                await ctx.step(InventoryActivities.release_stock, ref, f"release {shipment.id}")
            raise refused(
                f"the card's hold could not grow by {money(amount, increment.currency)} ({reason}): "
                "nothing was changed"
            ) from None
        ctx.payments.book(result)
        await ctx.event(
            OrderEventType.payment_authorized,
            f"{money(result.amount, increment.currency)} more ({result.reference}): the edit raised the total",
        )


def _cut(shipments: list[ShipmentView], fewer: dict[str, int]) -> list[ShipmentView]:
    """Take `fewer` units of each SKU out of the shipments, the last ones first; the shipments cut (one
    left with nothing is cancelled)."""
    left = dict(fewer)
    cut = []
    for shipment in reversed(shipments):
        if shipment.status == ShipmentStatus.cancelled:
            continue
        kept = []
        for x in shipment.lines:
            going = min(left.get(x.sku, 0), x.quantity)
            left[x.sku] = left.get(x.sku, 0) - going
            if x.quantity > going:
                kept.append(ShipmentLine(sku=x.sku, quantity=x.quantity - going))
        if kept != shipment.lines:
            shipment.lines = kept
            if not kept:
                shipment.status, shipment.amount = ShipmentStatus.cancelled, Decimal(0)
            cut.append(shipment)
    return cut


def _units(lines: list[PricedLine] | list[ShipmentLine]) -> str:
    return ", ".join(f"{x.quantity} x {x.sku}" for x in lines)
