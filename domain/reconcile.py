"""What an order whose workflow can no longer act still holds in the database, and settling it.

A terminated (or failed, timed out, cancelled) run runs no compensation: its reservations stay active
and its authorization open. `services/reconcile.py` finds such orders and settles them with these
functions; stock changes only through the stock ledger's `move`, as everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import ColumnElement, Select, case, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db import SessionFactory
from domain import webhook_outbox
from domain.stock import ENDED_ORDER_STATUSES
from domain.stock_ledger import move
from models import tables as t
from models.events import OrderEventType, PaymentKind
from models.orders import OrderStatus, PaymentStatus, ShipmentStatus
from models.steps import EventRecord


@dataclass(frozen=True)
class HeldStock:
    """The units of one reservation."""

    shipment_id: str
    sku: str
    warehouse: str
    quantity: int

    def __str__(self) -> str:
        return f"{self.quantity} x {self.sku}@{self.warehouse} ({self.shipment_id})"


@dataclass(frozen=True)
class OrderRow:
    status: str
    payment_status: str
    currency: str


def order_row(sessions: SessionFactory, order_id: str) -> OrderRow | None:
    with sessions() as session:
        order = session.get(t.Order, order_id)
        return None if order is None else OrderRow(order.status, order.payment_status, order.currency)


def held_stock(sessions: SessionFactory, order_id: str) -> list[HeldStock]:
    """The order's active reservations: units reserved on the shelf."""
    with sessions() as session:
        return [_held(r) for r in _reservations(session, order_id, "active", lock=False)]


def picked_not_shipped(sessions: SessionFactory, order_id: str) -> list[HeldStock]:
    """Units picked off the shelf for a shipment that never left (its run stopped before shipping)."""
    with sessions() as session:
        rows = session.scalars(
            _picked_not_shipped(order_id).order_by(t.Reservation.sku, t.Reservation.warehouse)
        )
        return [_held(r) for r in rows]


def release_reservations(sessions: SessionFactory, order_id: str) -> list[HeldStock]:
    """Release every active reservation of the order, as the release step does: the ledger's conditional
    move, the reservation marked released, its shipment cancelled unless it shipped. Returns what was
    released (nothing on a repeat)."""
    released: list[HeldStock] = []
    with sessions.begin() as session:
        for r in _reservations(session, order_id, "active", lock=True):
            if not move(session, r.sku, r.warehouse, "release", reserved=-r.quantity, order_id=order_id):
                raise RuntimeError(f"stock for {r.sku}@{r.warehouse} disagrees with reservation {r.id}")
            r.status = "released"
            released.append(_held(r))
            shipment = session.get(t.Shipment, r.shipment_id)
            if shipment is not None and shipment.shipped_at is None:
                shipment.status = ShipmentStatus.cancelled.value
    return released


def restock_unshipped(sessions: SessionFactory, order_id: str) -> list[HeldStock]:
    """Put back on the shelf the units picked for shipments that never left, as the restock
    compensation does: a restock movement, the reservation marked restocked, the shipment cancelled."""
    restocked: list[HeldStock] = []
    with sessions.begin() as session:
        rows = session.scalars(
            _picked_not_shipped(order_id)
            .order_by(t.Reservation.sku, t.Reservation.warehouse)
            .with_for_update()
        )
        for r in rows:
            move(
                session,
                r.sku,
                r.warehouse,
                "restock",
                on_hand=r.quantity,
                order_id=order_id,
                reason=f"{r.shipment_id} not shipped (reconcile)",
            )
            r.status = "restocked"
            restocked.append(_held(r))
            shipment = session.get(t.Shipment, r.shipment_id)
            if shipment is not None and shipment.shipped_at is None:
                shipment.status = ShipmentStatus.cancelled.value
    return restocked


def close_order(
    sessions: SessionFactory, order_id: str, detail: str, payment_status: PaymentStatus | None
) -> str | None:
    """Mark an order whose workflow can no longer act cancelled (unless it had ended already), set its
    payment status, and append a `reconciled` event with `detail` to its audit trail. Returns the
    status it had when it changed, else None."""
    for attempt in range(3):
        try:
            with sessions.begin() as session:
                order = session.get(t.Order, order_id, with_for_update=True)
                if order is None:
                    return None
                before = order.status
                changed = before not in ENDED_ORDER_STATUSES
                if changed:
                    order.status = OrderStatus.cancelled.value
                if payment_status is not None:
                    order.payment_status = payment_status.value
                seq = session.scalar(
                    select(func.max(t.OrderEvent.seq)).where(t.OrderEvent.order_id == order_id)
                )
                event = EventRecord(
                    order_id=order_id,
                    seq=(seq or 0) + 1,
                    at=t.utcnow(),
                    type=OrderEventType.reconciled,
                    detail=detail,
                    status=order.status,
                    payment_status=order.payment_status,
                )
                session.add(
                    t.OrderEvent(
                        order_id=order_id, seq=event.seq, at=event.at, type=event.type, detail=detail
                    )
                )
                # subscribers hear of the cancellation as of any other (docs/webhooks.md)
                webhook_outbox.put_order_events(session, [event], before)
            return before if changed else None
        except IntegrityError:  # another reconcile appended an event at the same time: take the next seq
            if attempt == 2:
                raise
    return None


def ended_orders_still_holding(sessions: SessionFactory) -> list[str]:
    """Orders the database says have ended (rejected, cancelled, completed) that still hold an active
    reservation or an approved authorization neither captured in full nor voided: a compensation
    that gave up, whatever the state of their run (the caller checks it is closed)."""
    approved = t.Payment.status == "approved"

    def total(*kinds: PaymentKind) -> ColumnElement[Decimal]:
        return func.sum(case((t.Payment.kind.in_(kinds), t.Payment.amount), else_=0))

    # held = authorized (with increments) - captured - voided (in part or in full): as ledger_totals
    money = (
        select(t.Payment.order_id)
        .where(approved)
        .group_by(t.Payment.order_id)
        .having(total(*PaymentKind.holds()) > total(PaymentKind.capture) + total(PaymentKind.void))
    )
    stock = select(t.Reservation.order_id).where(t.Reservation.status == "active")
    query = (
        select(t.Order.id)
        .where(
            t.Order.status.in_(ENDED_ORDER_STATUSES),
            t.Order.imported_from.is_(None),  # historical orders have no run to settle and hold nothing
            or_(t.Order.id.in_(money), t.Order.id.in_(stock)),
        )
        .order_by(t.Order.id)
    )
    with sessions() as session:
        return list(session.scalars(query))


def _picked_not_shipped(order_id: str) -> Select[tuple[t.Reservation]]:
    return (
        select(t.Reservation)
        .join(t.Shipment, t.Shipment.id == t.Reservation.shipment_id)
        .where(
            t.Reservation.order_id == order_id,
            t.Reservation.status == "picked",
            t.Shipment.shipped_at.is_(None),
        )
    )


def _reservations(session: Session, order_id: str, status: str, lock: bool) -> list[t.Reservation]:
    query = (
        select(t.Reservation)
        .where(t.Reservation.order_id == order_id, t.Reservation.status == status)
        .order_by(t.Reservation.sku, t.Reservation.warehouse)  # the ledger's lock order
    )
    return list(session.scalars(query.with_for_update() if lock else query))


def _held(r: t.Reservation) -> HeldStock:
    return HeldStock(shipment_id=r.shipment_id, sku=r.sku, warehouse=r.warehouse, quantity=r.quantity)
