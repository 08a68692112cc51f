"""The order's payment totals as the ledger has them, and the payment status they make. A leaf."""

from __future__ import annotations

from decimal import Decimal

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.events import PaymentKind
    from models.orders import OrderView, PaymentStatus
    from models.steps import PaymentResult


class PaymentBook:
    """Books each payment step's result into the order's view (`view.payment`, `view.payment_status`)."""

    def __init__(self, view: OrderView) -> None:
        self._view = view
        self.voided = False  # the authorization holds nothing any more: nothing more can be captured
        # goodwill refunds accepted and not yet booked: what other refunds must leave room for
        self.pending_refunds = Decimal("0")

    @property
    def held(self) -> Decimal:
        """What the authorization still holds for captures to come: authorized (with increments), not
        captured, not released by a void."""
        totals = self._view.payment
        return totals.authorized - totals.captured - totals.voided

    @property
    def refundable(self) -> Decimal:
        """Captured, not refunded, and not promised to a goodwill refund under way."""
        totals = self._view.payment
        return totals.captured - totals.refunded - self.pending_refunds

    def book(self, result: PaymentResult | None) -> None:
        """Keep the payment totals and the derived payment status in step with the ledger."""
        totals = self._view.payment
        if result is None:
            pass
        elif result.kind in PaymentKind.holds():
            totals.authorized += result.amount
        elif result.kind == PaymentKind.capture:
            totals.captured += result.amount
        elif result.kind == PaymentKind.refund:
            totals.refunded += result.amount
        elif result.kind == PaymentKind.goodwill_refund:
            totals.refunded += result.amount
            totals.goodwill_refunded += result.amount
        elif result.kind == PaymentKind.void:  # a part (an edit, cancelled lines) or all that was left
            totals.voided += result.amount
            self.voided = self.held <= 0
        self._view.payment_status = payment_status(
            totals.authorized, totals.captured, totals.refunded, self.voided
        )


def money(amount: Decimal, currency: str) -> str:
    return f"{amount:.2f} {currency}"


def payment_status(authorized: Decimal, captured: Decimal, refunded: Decimal, voided: bool) -> PaymentStatus:
    if captured > 0:
        if refunded >= captured:
            return PaymentStatus.refunded
        return PaymentStatus.partially_refunded if refunded > 0 else PaymentStatus.captured
    if voided:
        return PaymentStatus.voided
    return PaymentStatus.authorized if authorized > 0 else PaymentStatus.pending
