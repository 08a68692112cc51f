"""A customer's profile (the console's CRM view, and reports): their orders, support notes, returns and
feedback, and two figures, all from the database rows the workflows mirror (`customers`, `orders`,
`order_lines`, `order_events`, `returns`, `return_lines`, `feedback`, `payments`).

- lifetime value: approved captures minus approved refunds in the `payments` ledger, over all their
  orders (in the orders' currency; a customer whose orders use several currencies gets one figure per
  currency).
- return rate: units returned / units ordered. Units returned are the return lines of returns the
  warehouse received (`received_at` set: refunded or exchanged); units ordered are the order lines of all
  their orders. None when they ordered nothing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select

from db import SessionFactory
from models import tables as t
from models.events import PaymentKind

CENT = Decimal("0.01")


class UnknownCustomer(LookupError):
    def __init__(self, customer_id: str) -> None:
        super().__init__(f"unknown customer {customer_id}")
        self.customer_id = customer_id


@dataclass(frozen=True)
class CustomerOrder:
    order_id: str
    placed_at: datetime
    channel: str
    status: str
    total: Decimal | None
    currency: str


@dataclass(frozen=True)
class CustomerNote:
    order_id: str
    at: datetime
    text: str


@dataclass(frozen=True)
class CustomerReturn:
    rma: str
    order_id: str
    status: str
    refund_amount: Decimal
    units: int
    requested_at: datetime


@dataclass(frozen=True)
class CustomerFeedback:
    order_id: str
    score: int
    comment: str | None
    at: datetime


@dataclass(frozen=True)
class CustomerProfile:
    customer_id: str
    name: str
    email: str
    phone: str | None
    orders: list[CustomerOrder]  # newest first
    notes: list[CustomerNote]  # newest first
    returns: list[CustomerReturn]  # newest first
    feedback: list[CustomerFeedback]  # newest first
    lifetime_value: dict[str, Decimal]  # currency -> captured minus refunded
    units_ordered: int
    units_returned: int

    @property
    def return_rate(self) -> Decimal | None:
        """Units returned / units ordered (a fraction, 0-1), None without any unit ordered."""
        if self.units_ordered == 0:
            return None
        return Decimal(self.units_returned) / Decimal(self.units_ordered)

    @property
    def average_score(self) -> Decimal | None:
        if not self.feedback:
            return None
        return Decimal(sum(f.score for f in self.feedback)) / Decimal(len(self.feedback))


def customer_profile(sessions: SessionFactory, customer_id: str) -> CustomerProfile:
    """The profile of `customer_id`; UnknownCustomer when there is no such customer."""
    with sessions() as session:
        customer = session.get(t.Customer, customer_id)
        if customer is None:
            raise UnknownCustomer(customer_id)
        order_rows = list(
            session.scalars(
                select(t.Order)
                .where(t.Order.customer_id == customer_id)
                .order_by(t.Order.placed_at.desc(), t.Order.id.desc())
            )
        )
        order_ids = [o.id for o in order_rows]
        currency_of = {o.id: o.currency for o in order_rows}
        orders = [
            CustomerOrder(
                order_id=o.id,
                placed_at=o.placed_at,
                channel=o.channel,
                status=o.status,
                total=Decimal(o.total) if o.total is not None else None,
                currency=o.currency,
            )
            for o in order_rows
        ]
        notes = [
            CustomerNote(order_id=e.order_id, at=e.at, text=e.detail)
            for e in session.scalars(
                select(t.OrderEvent)
                .where(t.OrderEvent.order_id.in_(order_ids), t.OrderEvent.type == "support_note")
                .order_by(t.OrderEvent.at.desc(), t.OrderEvent.id.desc())
            )
        ]
        units_by_rma = dict(
            session.execute(
                select(t.ReturnLine.rma, func.sum(t.ReturnLine.quantity))
                .join(t.Return, t.Return.rma == t.ReturnLine.rma)
                .where(t.Return.order_id.in_(order_ids))
                .group_by(t.ReturnLine.rma)
            )
            .tuples()
            .all()
        )
        return_rows = list(
            session.scalars(
                select(t.Return)
                .where(t.Return.order_id.in_(order_ids))
                .order_by(t.Return.requested_at.desc(), t.Return.rma.desc())
            )
        )
        returns = [
            CustomerReturn(
                rma=r.rma,
                order_id=r.order_id,
                status=r.status,
                refund_amount=Decimal(r.refund_amount).quantize(CENT),
                units=int(units_by_rma.get(r.rma) or 0),
                requested_at=r.requested_at,
            )
            for r in return_rows
        ]
        units_returned = sum(
            int(units_by_rma.get(r.rma) or 0) for r in return_rows if r.received_at is not None
        )
        units_ordered = int(
            session.scalar(
                select(func.coalesce(func.sum(t.OrderLine.quantity), 0)).where(
                    t.OrderLine.order_id.in_(order_ids)
                )
            )
            or 0
        )
        feedback = [
            CustomerFeedback(order_id=f.order_id, score=f.score, comment=f.comment, at=f.created_at)
            for f in session.scalars(
                select(t.Feedback)
                .where(t.Feedback.order_id.in_(order_ids))
                .order_by(t.Feedback.created_at.desc(), t.Feedback.order_id)
            )
        ]
        value: dict[str, Decimal] = defaultdict(Decimal)
        for order_id, kind, amount in session.execute(
            select(t.Payment.order_id, t.Payment.kind, func.sum(t.Payment.amount))
            .where(
                t.Payment.order_id.in_(order_ids),
                t.Payment.status == "approved",
                t.Payment.kind.in_((PaymentKind.capture, *PaymentKind.refunds())),
            )
            .group_by(t.Payment.order_id, t.Payment.kind)
        ):
            sign = 1 if kind == PaymentKind.capture else -1
            value[currency_of[order_id]] += sign * Decimal(amount)
        return CustomerProfile(
            customer_id=customer.id,
            name=customer.name,
            email=customer.email,
            phone=customer.phone,
            orders=orders,
            notes=notes,
            returns=returns,
            feedback=feedback,
            lifetime_value={c: v.quantize(CENT) for c, v in sorted(value.items())},
            units_ordered=units_ordered,
            units_returned=units_returned,
        )


def customers_by_email(sessions: SessionFactory, email: str) -> list[str]:
    """The ids of the customers whose e-mail is `email` (exact, case-insensitive), sorted."""
    wanted = email.strip().lower()
    if not wanted:
        return []
    with sessions() as session:
        return list(
            session.scalars(
                select(t.Customer.id).where(func.lower(t.Customer.email) == wanted).order_by(t.Customer.id)
            )
        )
