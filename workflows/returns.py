"""Returns (RMA) and exchanges: authorize, await the parcel, restock or write off, refund or replace."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from decimal import Decimal

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.inventory import InventoryActivities
    from activities.orders import OrderActivities
    from activities.payments import PaymentActivities
    from activities.returns import ReturnActivities
    from domain.order_money import refund_of
    from models.events import OrderEventType
    from models.orders import (
        OrderStatus,
        PricedLine,
        ReturnCondition,
        ReturnLineView,
        ReturnReceipt,
        ReturnRequest,
        ReturnStatus,
        ReturnView,
        ShipmentLine,
        ShipmentStatus,
        ShipmentView,
    )
    from models.steps import (
        NotificationKind,
        PaymentRequest,
        PriceRequest,
        ReceiptRecord,
        ReserveRequest,
        ReturnOutcome,
        ReturnRecord,
    )
    from workflows.context import OrderContext
    from workflows.failures import OrderFailed, business_refusal
    from workflows.fulfilment import Fulfilment, undo_reservation
    from workflows.journal import by_whom
    from workflows.payments import money
    from workflows.saga import Saga

RETURNABLE_STATUSES = (OrderStatus.delivered, OrderStatus.partially_returned, OrderStatus.returned)


class ReturnDesk:
    def __init__(self, ctx: OrderContext, fulfilment: Fulfilment) -> None:
        self._ctx = ctx
        self._fulfilment = fulfilment
        self._receipts: dict[str, ReturnCondition] = {}
        self._received_by: dict[str, str | None] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._prices: dict[str, Decimal] = {}

    # ---- the update: request_return ----

    def validate(self, request: ReturnRequest) -> None:
        """Refuse, changing nothing, what cannot be returned."""
        ctx = self._ctx
        ends = ctx.view.return_window_ends
        if ctx.view.status not in RETURNABLE_STATUSES or ends is None:
            raise _refused(
                f"order {ctx.order_id} is {ctx.view.status.value}: only delivered orders can be returned"
            )
        if workflow.now() >= ends:
            raise _refused(f"the return window of order {ctx.order_id} closed at {ends:%Y-%m-%d %H:%M} UTC")
        returnable = self._returnable()
        if request.sku not in returnable:
            raise _refused(f"SKU {request.sku} was not delivered with order {ctx.order_id}")
        remaining = sum(returnable[request.sku].values())
        if request.quantity > remaining:
            raise _refused(
                f"only {remaining} unit(s) of {request.sku} remain returnable, not {request.quantity}"
            )

    async def open(self, request: ReturnRequest) -> ReturnView:
        ctx = self._ctx
        exchange: PricedLine | None = None
        if request.exchange_sku:
            try:
                exchange = await ctx.step(
                    OrderActivities.price_sku,
                    PriceRequest(sku=request.exchange_sku, currency=ctx.view.currency),
                    f"price exchange SKU {request.exchange_sku}",
                )
            except ActivityError as err:
                raise _refused(business_refusal(err) or str(err)) from err
            self.validate(request)  # the world may have moved while we priced the exchange

        rma = f"RMA-{ctx.order_id}-{len(ctx.view.returns) + 1}"
        ret = ReturnView(
            rma=rma,
            reason=request.reason,
            lines=self._take(request),
            exchange_sku=request.exchange_sku,
            requested_at=workflow.now(),
        )
        ctx.view.returns.append(ret)  # counted at once, so concurrent requests can never over-return
        if exchange is not None:
            self._prices[exchange.sku] = exchange.unit_price
        await ctx.step(
            ReturnActivities.record_return,
            ReturnRecord(
                order_id=ctx.order_id,
                rma=rma,
                reason=ret.reason,
                exchange_sku=ret.exchange_sku,
                lines=ret.lines,
                requested_at=ret.requested_at,
            ),
            f"record return {rma}",
        )
        what = ", ".join(f"{line.quantity} x {line.sku}" for line in ret.lines)
        await ctx.event(
            OrderEventType.return_authorized,
            f"{rma}: {what} ({ret.reason})"
            + (f", exchange for {ret.exchange_sku}" if ret.exchange_sku else "")
            + by_whom(request.by),
        )
        days = ctx.policy.return_receipt_timeout.total_seconds() / 86400
        await ctx.notify(
            NotificationKind.return_authorized,
            f"return:{rma}",
            rma=rma,
            lines=what,
            warehouse=ret.lines[0].warehouse,
            receipt_days=f"{days:g}",
        )
        self._tasks.append(asyncio.create_task(self._process(ret)))
        return ret

    # ---- the signal: the warehouse received a parcel ----

    def receive(self, receipt: ReturnReceipt) -> None:
        if any(r.rma == receipt.rma for r in self._ctx.view.returns):
            self._receipts.setdefault(receipt.rma, receipt.condition)  # a duplicate receipt changes nothing
            self._received_by.setdefault(receipt.rma, receipt.by)

    def all_settled(self) -> bool:
        return all(task.done() for task in self._tasks)

    # ---- one return's life ----

    async def _process(self, ret: ReturnView) -> None:
        ctx = self._ctx
        try:
            await workflow.wait_condition(
                lambda: ret.rma in self._receipts,
                timeout=ctx.policy.return_receipt_timeout,
                timeout_summary=f"receipt of {ret.rma}",
            )
        except TimeoutError:
            await self._close(ret, ReturnStatus.expired)
            await ctx.event(
                OrderEventType.return_expired,
                f"{ret.rma}: nothing received within {ctx.policy.return_receipt_timeout}",
            )
            await ctx.notify(NotificationKind.return_expired, f"expired:{ret.rma}", rma=ret.rma)
            return
        ret.condition, ret.received_at = self._receipts[ret.rma], workflow.now()
        restocked = await ctx.step(
            ReturnActivities.receive_return,
            ReceiptRecord(
                order_id=ctx.order_id, rma=ret.rma, condition=ret.condition, received_at=ret.received_at
            ),
            f"receive return {ret.rma}",
        )
        units = sum(line.quantity for line in ret.lines)
        fate = (
            f"{restocked} unit(s) restocked"
            if ret.condition == ReturnCondition.good
            else f"{units} unit(s) written off"
        )
        by = by_whom(self._received_by.get(ret.rma))
        await ctx.event(OrderEventType.return_received, f"{ret.rma}: {ret.condition.value}, {fate}{by}")
        if ret.exchange_sku is None or not await self._exchange(ret):
            await self._refund(ret, self._refund_value(ret))

    def _refund_value(self, ret: ReturnView) -> Decimal:
        """The returned units' share of their lines' charge (discounted price and tax, not shipping),
        after the units refunded by earlier returns (domain/order_money.py: exact over all returns)."""
        money = self._ctx.view.money()
        done: dict[str, int] = {}
        for earlier in self._ctx.view.returns:
            if earlier.status == ReturnStatus.refunded and earlier.rma != ret.rma:
                for line in earlier.lines:
                    done[line.sku] = done.get(line.sku, 0) + line.quantity
        amount = Decimal("0")
        for line in ret.lines:
            amount += refund_of(money, line.sku, line.quantity, done.get(line.sku, 0))
            done[line.sku] = done.get(line.sku, 0) + line.quantity
        return amount

    async def _refund(self, ret: ReturnView, amount: Decimal) -> None:
        """Refund the returned units and close the return; the order becomes (partially) returned."""
        await self._pay_back(ret, amount)
        await self._close(ret, ReturnStatus.refunded)
        await self._update_order_status()

    async def _pay_back(self, ret: ReturnView, amount: Decimal) -> None:
        ctx = self._ctx
        amount = min(amount, ctx.payments.refundable)  # never more than captured (goodwill under way counts)
        if amount > 0:
            request = PaymentRequest(
                order_id=ctx.order_id,
                idempotency_key=ctx.key(f"refund:{ret.rma}"),
                amount=amount,
                currency=ctx.view.currency,
            )
            ctx.payments.book(
                await ctx.step(
                    PaymentActivities.refund_payment, request, f"refund {money(amount, request.currency)}"
                )
            )
            ret.refund_amount += amount
            await ctx.event(OrderEventType.refund_issued, f"{ret.rma}: {money(amount, ctx.view.currency)}")
            await ctx.notify(
                NotificationKind.refund_issued,
                f"refund:{ret.rma}",
                rma=ret.rma,
                amount=f"{amount:.2f}",
                currency=ctx.view.currency,
            )

    async def _exchange(self, ret: ReturnView) -> bool:
        """Ship the replacement as a new shipment of this order; False if it cannot be done (then refund)."""
        ctx = self._ctx
        assert ret.exchange_sku is not None
        quantity = sum(line.quantity for line in ret.lines)
        difference = self._prices[ret.exchange_sku] * quantity - _value(ret)
        saga = Saga(ctx)
        try:
            shipments = await self._reserve_exchange(ret, quantity, saga)
            if difference > 0:
                await self._authorize_difference(ret, difference, saga)
            for n, shipment in enumerate(shipments):  # the difference is captured with the first parcel
                shipment.amount = max(difference, Decimal("0")) if n == 0 else Decimal("0")
                await self._fulfilment.dispatch(shipment, saga)
        except OrderFailed as failure:
            await ctx.event(
                OrderEventType.exchange_failed,
                f"{ret.rma}: {failure.reason}; refunding instead",
                failure.code,
            )
            await saga.compensate()
            for shipment in (s for s in ctx.view.shipments if s.exchange_for == ret.rma):
                shipment.status = ShipmentStatus.cancelled
            return False
        if difference < 0:
            await self._pay_back(ret, -difference)  # the customer keeps goods: not a returned order
        ret.exchange_shipment_id = shipments[0].id
        await self._close(ret, ReturnStatus.exchanged)
        first = shipments[0]

        note = (
            f"We charged the difference of {money(difference, ctx.view.currency)}."
            if difference > 0
            else f"We refunded the difference of {money(-difference, ctx.view.currency)}."
            if difference < 0
            else ""
        )
        await ctx.notify(
            NotificationKind.exchange_shipped,
            f"exchange:{ret.rma}",
            rma=ret.rma,
            sku=ret.exchange_sku,
            carrier=first.carrier or "",
            tracking_number=first.tracking_number or "",
            money=note,
        )
        await asyncio.gather(*(self._fulfilment.await_delivery(s) for s in shipments))
        return True

    async def _reserve_exchange(self, ret: ReturnView, quantity: int, saga: Saga) -> list[ShipmentView]:
        ctx = self._ctx
        assert ret.exchange_sku is not None
        request = ReserveRequest(
            order_id=ctx.order_id,
            lines=[ShipmentLine(sku=ret.exchange_sku, quantity=quantity)],
            shipment_prefix=f"{ret.rma}-X",
        )
        allocated = await ctx.step_or_fail(
            InventoryActivities.reserve_stock,
            request,
            f"reserve exchange {ret.exchange_sku}",
            ctx.view.status,
        )

        shipments = [
            ShipmentView(id=a.id, warehouse=a.warehouse, lines=a.lines, exchange_for=ret.rma)
            for a in allocated
        ]
        ctx.view.shipments.extend(shipments)
        for shipment in shipments:
            undo_reservation(saga, ctx, shipment.id, tagged=False)
        await ctx.event(
            OrderEventType.exchange_reserved,
            f"{ret.rma}: {quantity} x {ret.exchange_sku} from " + ", ".join(s.warehouse for s in shipments),
        )
        return shipments

    async def _authorize_difference(self, ret: ReturnView, difference: Decimal, saga: Saga) -> None:
        ctx = self._ctx
        request = PaymentRequest(
            order_id=ctx.order_id,
            idempotency_key=ctx.key(f"authorize:{ret.rma}"),
            amount=difference,
            currency=ctx.view.currency,
            token=ctx.request.order.payment.token,
        )
        summary = f"authorize the difference {money(difference, request.currency)}"
        ctx.payments.book(
            await ctx.step_or_fail(PaymentActivities.authorize_payment, request, summary, ctx.view.status)
        )

        await ctx.event(
            OrderEventType.payment_authorized,
            f"{money(difference, request.currency)} price difference for {ret.rma}",
        )

    async def _close(self, ret: ReturnView, status: ReturnStatus) -> None:
        ret.status = status
        await self._ctx.step(
            ReturnActivities.close_return,
            ReturnOutcome(
                order_id=self._ctx.order_id, rma=ret.rma, status=status, refund_amount=ret.refund_amount
            ),
            f"close return {ret.rma}: {status.value}",
        )

    async def _update_order_status(self) -> None:
        ctx = self._ctx
        ordered = sum(line.quantity for line in ctx.view.lines)
        returned = sum(
            line.quantity for r in ctx.view.returns if r.status == ReturnStatus.refunded for line in r.lines
        )
        status = OrderStatus.returned if returned >= ordered else OrderStatus.partially_returned
        if returned and status != ctx.view.status:
            await ctx.set_status(
                status, OrderEventType.of_order(status), f"{returned} of {ordered} unit(s) returned"
            )

    # ---- bookkeeping ----

    def _returnable(self) -> dict[str, dict[str, int]]:
        """sku -> warehouse -> units delivered and not yet under a (live) return (every delivered sku)."""
        units: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for shipment in self._ctx.view.shipments:
            if shipment.status == ShipmentStatus.delivered:
                for line in shipment.lines:
                    units[line.sku][shipment.warehouse] += line.quantity
        for ret in self._ctx.view.returns:
            if ret.status != ReturnStatus.expired:
                for returned in ret.lines:
                    units[returned.sku][returned.warehouse] -= returned.quantity
        return {sku: {w: q for w, q in by_wh.items() if q > 0} for sku, by_wh in units.items()}

    def _take(self, request: ReturnRequest) -> list[ReturnLineView]:
        """Which warehouses the returned units go back to (those they shipped from)."""
        price = self._price_of(request.sku)
        lines, wanted = [], request.quantity
        for warehouse, available in sorted(self._returnable()[request.sku].items()):
            take = min(available, wanted)
            lines.append(
                ReturnLineView(sku=request.sku, quantity=take, unit_price=price, warehouse=warehouse)
            )
            wanted -= take
            if wanted == 0:
                break
        return lines

    def _price_of(self, sku: str) -> Decimal:
        for line in self._ctx.view.lines:
            if line.sku == sku:
                return line.unit_price
        return self._prices[sku]


def _value(ret: ReturnView) -> Decimal:
    return sum((line.unit_price * line.quantity for line in ret.lines), Decimal("0"))


def _refused(message: str) -> ApplicationError:
    """A return the desk will not take: fails the update (never the workflow task), nothing changed."""
    return ApplicationError(message, type="ReturnRefused", non_retryable=True)
