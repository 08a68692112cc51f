"""The operations dashboard's figures, from the database rows the workflows mirror (`orders`,
`order_events`, `shipments`, `returns`, `stock`, `purchase_orders`): plain queries, one dataclass, so
that the console's dashboard and a later report read the same numbers.

Figures of "today" are of the UTC day that holds `now`, bucketed by UTC hour.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db import SessionFactory
from domain.stock import LowStock, low_stock
from models import tables as t
from models.events import OrderEventType
from models.orders import ReturnStatus
from models.steps import StockKey

ATTENTION_EVENTS = (
    OrderEventType.step_stuck,
    OrderEventType.step_recovered,
    OrderEventType.compensation_failed,
)
LIST_LIMIT = 50  # rows per list on the page (the counts are always complete)


@dataclass(frozen=True)
class HourCounts:
    hour: int  # 0-23, UTC
    placed: int = 0
    shipped: int = 0
    delivered: int = 0


@dataclass(frozen=True)
class OrderLine:
    """One order in a list: ids, status and time only (no personal data)."""

    order_id: str
    status: str
    since: datetime  # placed, held, flagged... as the list says
    why: str = ""


@dataclass(frozen=True)
class OpenReturn:
    rma: str
    order_id: str
    requested_at: datetime


@dataclass(frozen=True)
class OpenPurchaseOrder:
    id: str
    sku: str
    warehouse: str
    quantity: int
    expected_at: datetime
    late: bool


@dataclass(frozen=True)
class Dashboard:
    at: datetime
    by_status: dict[str, int]  # every status that has orders, most first
    today: list[HourCounts]  # 24 hours of the UTC day
    overdue: list[OrderLine]  # shipped, no delivery confirmation past the SLA
    attention: list[OrderLine]  # a step stuck now, a compensation that gave up, a parcel in trouble,
    # a message not delivered
    on_hold: list[OrderLine]  # waiting for a support decision, oldest first
    open_returns: list[OpenReturn]
    low_stock: list[LowStock]
    open_purchase_orders: list[OpenPurchaseOrder]
    counts: dict[str, int] = field(default_factory=dict)  # the lists' full lengths

    @property
    def total_orders(self) -> int:
        return sum(self.by_status.values())

    @property
    def placed_today(self) -> int:
        return sum(h.placed for h in self.today)

    @property
    def shipped_today(self) -> int:
        return sum(h.shipped for h in self.today)

    @property
    def delivered_today(self) -> int:
        return sum(h.delivered for h in self.today)


def dashboard(sessions: SessionFactory, now: datetime | None = None) -> Dashboard:
    now = (now or datetime.now(UTC)).astimezone(UTC)
    with sessions() as session:
        by_status = orders_by_status(session)
        today = hourly_today(session, now)
        overdue = overdue_deliveries(session)
        attention = needing_attention(session)
        on_hold = on_hold_orders(session)
        returns = open_returns(session)
        keys = [
            StockKey(sku=sku, warehouse=wh)
            for sku, wh in session.execute(
                select(t.Stock.sku, t.Stock.warehouse).where(t.Stock.reorder_point.is_not(None))
            )
        ]
        pos = open_purchase_orders(session, now)
    low = sorted(low_stock(sessions, keys), key=lambda s: (s.available - s.reorder_point, s.sku, s.warehouse))
    counts = {
        "overdue": len(overdue),
        "attention": len(attention),
        "on_hold": len(on_hold),
        "open_returns": len(returns),
        "low_stock": len(low),
        "open_purchase_orders": len(pos),
    }
    return Dashboard(
        at=now,
        by_status=by_status,
        today=today,
        overdue=overdue[:LIST_LIMIT],
        attention=attention[:LIST_LIMIT],
        on_hold=on_hold[:LIST_LIMIT],
        open_returns=returns[:LIST_LIMIT],
        low_stock=low[:LIST_LIMIT],
        open_purchase_orders=pos[:LIST_LIMIT],
        counts=counts,
    )


def orders_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(t.Order.status, func.count())
        .where(t.Order.imported_from.is_(None))  # live orders: imported past sales would swamp the counts
        .group_by(t.Order.status)
    ).all()
    return dict(sorted(((status, int(n)) for status, n in rows), key=lambda r: (-r[1], r[0])))


def hourly_today(session: Session, now: datetime) -> list[HourCounts]:
    """Orders placed, and orders with a parcel handed to the carrier or delivered (the shipments'
    `shipped_at` and `delivered_at`; an order with several parcels counts once per hour), in each UTC
    hour of today."""
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    end = start + timedelta(days=1)
    placed = Counter(
        at.astimezone(UTC).hour
        for at in session.scalars(
            select(t.Order.placed_at).where(t.Order.placed_at >= start, t.Order.placed_at < end)
        )
    )
    moved: dict[str, Counter[int]] = {}
    for name, column in (("shipped", t.Shipment.shipped_at), ("delivered", t.Shipment.delivered_at)):
        rows = session.execute(select(t.Shipment.order_id, column).where(column >= start, column < end)).all()
        moved[name] = Counter(hour for _, hour in {(o, at.astimezone(UTC).hour) for o, at in rows})
    return [
        HourCounts(hour, placed[hour], moved["shipped"][hour], moved["delivered"][hour]) for hour in range(24)
    ]


def overdue_deliveries(session: Session) -> list[OrderLine]:
    """Orders still on their way (shipped) that the workflow flagged overdue (`delivery_overdue`)."""
    rows = session.execute(
        select(t.Order.id, t.Order.status, func.min(t.OrderEvent.at))
        .join(t.OrderEvent, t.OrderEvent.order_id == t.Order.id)
        .where(t.Order.status == "shipped", t.OrderEvent.type == OrderEventType.delivery_overdue)
        .group_by(t.Order.id, t.Order.status)
        .order_by(func.min(t.OrderEvent.at), t.Order.id)
    ).all()
    return [
        OrderLine(order_id, status, since, "no delivery confirmation") for order_id, status, since in rows
    ]


def needing_attention(session: Session) -> list[OrderLine]:
    """Orders with a step stuck now (more `step_stuck` than `step_recovered` events), a compensation
    that gave up (`compensation_failed`: an incident until a person settles it), a parcel in
    trouble (`delivery_exception`), or a message the mail server refused for good (domain/outbox.py:
    the customer was not told; support tells them another way)."""
    events = session.execute(
        select(t.OrderEvent.order_id, t.OrderEvent.type, func.count(), func.max(t.OrderEvent.at))
        .where(t.OrderEvent.type.in_(ATTENTION_EVENTS))
        .group_by(t.OrderEvent.order_id, t.OrderEvent.type)
    ).all()
    per_order: dict[str, dict[str, tuple[int, datetime]]] = {}
    for order_id, kind, n, last in events:
        per_order.setdefault(order_id, {})[kind] = (int(n), last)
    flagged: dict[str, tuple[datetime, str]] = {}
    for order_id, kinds in per_order.items():
        if OrderEventType.compensation_failed in kinds:
            flagged[order_id] = (kinds[OrderEventType.compensation_failed][1], "compensation failed")
        elif (
            kinds.get(OrderEventType.step_stuck, (0, None))[0]
            > kinds.get(OrderEventType.step_recovered, (0, None))[0]
        ):
            flagged[order_id] = (kinds[OrderEventType.step_stuck][1], "step stuck")
    for order_id, updated in session.execute(
        select(t.Order.id, t.Order.updated_at).where(t.Order.status == "delivery_exception")
    ):
        flagged.setdefault(order_id, (updated, "parcel in trouble"))
    for order_id, failed in session.execute(
        select(t.Notification.order_id, func.min(t.Notification.failed_at))
        .where(t.Notification.failed_at.is_not(None))
        .group_by(t.Notification.order_id)
    ):
        flagged.setdefault(order_id, (failed, "message not delivered"))
    if not flagged:
        return []
    statuses = dict(
        session.execute(select(t.Order.id, t.Order.status).where(t.Order.id.in_(list(flagged))))
        .tuples()
        .all()
    )
    lines = [
        OrderLine(order_id, statuses.get(order_id, "?"), since, why)
        for order_id, (since, why) in flagged.items()
    ]
    return sorted(lines, key=lambda line: (line.since, line.order_id))


def on_hold_orders(session: Session) -> list[OrderLine]:
    """Orders on hold, oldest first, since they were put on hold (their last `order_on_hold` event)."""
    rows = session.execute(
        select(t.Order.id, t.Order.placed_at, func.max(t.OrderEvent.at))
        .outerjoin(
            t.OrderEvent,
            (t.OrderEvent.order_id == t.Order.id) & (t.OrderEvent.type == OrderEventType.order_on_hold),
        )
        .where(t.Order.status == "on_hold")
        .group_by(t.Order.id, t.Order.placed_at)
    ).all()
    lines = [
        OrderLine(order_id, "on_hold", held or placed, "waiting for review")
        for order_id, placed, held in rows
    ]
    return sorted(lines, key=lambda line: (line.since, line.order_id))


def open_returns(session: Session) -> list[OpenReturn]:
    """Return authorizations whose parcel has not arrived yet."""
    rows = session.execute(
        select(t.Return.rma, t.Return.order_id, t.Return.requested_at)
        .where(t.Return.status == ReturnStatus.requested)
        .order_by(t.Return.requested_at, t.Return.rma)
    ).all()
    return [OpenReturn(rma, order_id, at) for rma, order_id, at in rows]


def open_purchase_orders(session: Session, now: datetime) -> list[OpenPurchaseOrder]:
    rows = session.scalars(
        select(t.PurchaseOrder)
        .where(t.PurchaseOrder.status == "open")
        .order_by(t.PurchaseOrder.expected_at, t.PurchaseOrder.id)
    ).all()
    return [
        OpenPurchaseOrder(po.id, po.sku, po.warehouse, po.quantity, po.expected_at, po.expected_at < now)
        for po in rows
    ]
