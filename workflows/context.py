"""The state of one order inside its workflow, and the parts every piece of it shares.

`OrderContext` holds the order's view and its stop, and composes its parts, each with one job:
`Steps` runs a step (workflows/steps.py), `Journal` records and writes the order's events, status
mirror, messages and search attributes (workflows/journal.py), `PaymentBook` keeps the payment totals
(workflows/payments.py). The arrows point one way: context -> steps -> journal; payments and
failures import none of them. The order's vocabulary (`step`, `event`, `set_status`, `notify`...) is
kept here as one-line delegations, so the workflow's code reads as the order's story."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from decimal import Decimal
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.replenishment import ReplenishmentActivities
    from models.events import OrderEventType, ReasonCode
    from models.orders import (
        DiscountCodeView,
        GoodwillReason,
        OrderStatus,
        OrderView,
        PaymentStatus,
        PlaceOrder,
    )
    from models.steps import NotificationKind, PaymentRequest
    from models.workflow_names import step_key
    from workflows.failures import OrderFailed
    from workflows.journal import Journal
    from workflows.options import RETRY_FOREVER
    from workflows.payments import PaymentBook
    from workflows.steps import Steps


class OrderContext:
    def __init__(self, request: PlaceOrder) -> None:
        order = request.order
        self.request = request
        self.policy = request.policy
        self.view = OrderView(
            order_id=request.order_id,
            status=OrderStatus.received,
            payment_status=PaymentStatus.pending,
            channel=order.channel,
            customer_id=order.customer.id,
            currency=order.currency,
            placed_at=request.placed_at,
            discount_codes=[
                DiscountCodeView(code=c.code, amount=c.amount) for c in order.discount_codes or []
            ],
        )
        self.stop: OrderFailed | None = None  # set by a cancellation or a failed sibling shipment
        # set by the run: interrupts the order's main flow (when it may be) once it is stopping
        self.interrupt: Callable[[], None] | None = None
        self.journal = Journal(self.view)
        self.steps = Steps(self.journal, on_stuck=self._stuck)
        self.payments = PaymentBook(self.view)

    @property
    def order_id(self) -> str:
        return self.view.order_id

    def key(self, step: str) -> str:
        """Idempotency key for an outside-world request: the workflow id plus the step."""
        return step_key(workflow.info().workflow_id, step)

    def payment_request(self, step: str, amount: Decimal, card: bool = False) -> PaymentRequest:
        """A payment step's request: `amount` in the order's currency, under the step's idempotency key
        (`key`); with `card` the order's card token too (what the card holds: authorize, increment,
        void), without it none (captures and refunds name the order's payment, not the card)."""
        return PaymentRequest(
            order_id=self.order_id,
            idempotency_key=self.key(step),
            amount=amount,
            currency=self.view.currency,
            token=self.request.order.payment.token if card else "",
        )

    def checkpoint(self) -> None:
        """Between steps: stop here if the order was cancelled or a sibling failed."""
        if self.stop is not None:
            raise self.stop

    def _stuck(self) -> None:
        """A step was found stuck: stopped from Temporal meanwhile, do not wait for it for ever."""
        if self.stop is not None and self.stop.from_temporal and self.interrupt is not None:
            self.interrupt()

    async def ask_for_backordered_stock(self, skus: list[str]) -> None:
        """Make sure what a backorder waits for is on order: the purchase order it saw may have been
        received and offered before it was waiting, and nothing else would order again for it
        (replenishments are one per pair, so asking again starts nothing new)."""
        await self.step(
            ReplenishmentActivities.replenish_for_backorders,
            sorted(set(skus)),
            "make sure the backordered stock is on order",
        )

    # ---- the order's vocabulary, delegated to its parts ----

    async def step(
        self, activity: Callable[..., Any], arg: Any, summary: str, retry: RetryPolicy = RETRY_FOREVER
    ) -> Any:
        return await self.steps.run(activity, arg, summary, retry)

    async def step_or_fail(
        self, activity: Callable[..., Any], arg: Any, summary: str, status: OrderStatus
    ) -> Any:
        return await self.steps.run_or_fail(activity, arg, summary, status)

    def mark_incident(self) -> None:
        self.steps.mark_incident()

    async def event(
        self,
        event_type: OrderEventType,
        detail: str = "",
        reason_code: ReasonCode | GoodwillReason | None = None,
    ) -> None:
        await self.journal.event(event_type, detail, reason_code)

    async def set_status(
        self,
        status: OrderStatus,
        event_type: OrderEventType,
        detail: str = "",
        reason_code: ReasonCode | None = None,
    ) -> None:
        await self.journal.set_status(status, event_type, detail, reason_code)

    def upsert(self, update: Any, with_next_status: bool = False) -> None:
        self.journal.upsert(update, with_next_status)

    async def notify(
        self, kind: NotificationKind, key: str, to_support: bool = False, **context: str
    ) -> None:
        await self.journal.notify(kind, key, to_support, **context)

    def writes_held(self) -> AbstractContextManager[None]:
        return self.journal.writes_held()

    async def written(self) -> None:
        await self.journal.written()
