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
from domain import webhook_subscriptions
from domain.stock import LowStock, low_stock
from models import tables as t
from models.choices import ATTENTION_STATUSES, OrderStatus
from models.events import OrderEventType, ReasonCode
from models.orders import ReturnStatus
from models.steps import StockKey
from models.webhooks import WebhookView

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
    decisions: list[OrderLine]  # waiting for support's decision (a hold, a lost parcel), oldest first
    open_returns: list[OpenReturn]
    low_stock: list[LowStock]
    open_purchase_orders: list[OpenPurchaseOrder]
    counts: dict[str, int] = field(default_factory=dict)  # the lists' full lengths
    # webhook subscriptions disabled after failing for a day (docs/webhooks.md): an admin must act
    disabled_webhooks: list[WebhookView] = field(default_factory=list)

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
        decisions = sorted(
            on_hold + parcels_awaiting_choice(session) + returns_awaiting_approval(session),
            key=lambda line: (line.since, line.order_id),
        )
        returns = open_returns(session)
        keys = [
            StockKey(sku=sku, warehouse=wh)
            for sku, wh in session.execute(
                select(t.Stock.sku, t.Stock.warehouse).where(t.Stock.reorder_point.is_not(None))
            )
        ]
        pos = open_purchase_orders(session, now)
    disabled_webhooks = webhook_subscriptions.disabled(sessions)
    low = sorted(low_stock(sessions, keys), key=lambda s: (s.available - s.reorder_point, s.sku, s.warehouse))
    counts = {
        "overdue": len(overdue),
        "attention": len(attention),
        "on_hold": len(on_hold),
        "decisions": len(decisions),
        "open_returns": len(returns),
        "low_stock": len(low),
        "open_purchase_orders": len(pos),
        "disabled_webhooks": len(disabled_webhooks),
    }
    return Dashboard(
        at=now,
        by_status=by_status,
        today=today,
        overdue=overdue[:LIST_LIMIT],
        attention=attention[:LIST_LIMIT],
        decisions=decisions[:LIST_LIMIT],
        open_returns=returns[:LIST_LIMIT],
        low_stock=low[:LIST_LIMIT],
        open_purchase_orders=pos[:LIST_LIMIT],
        counts=counts,
        disabled_webhooks=disabled_webhooks[:LIST_LIMIT],
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
        select(t.Order.id, t.Order.updated_at).where(t.Order.status.in_(sorted(ATTENTION_STATUSES)))
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


# What a hold waits for, by the reason code of its `order_on_hold` event (the order's page says it in
# full); a hold whose event has no code (a row from before reason codes) waits for review.
HOLD_WAITS: dict[ReasonCode, str] = {
    ReasonCode.blocklisted_customer: "customer on the blocklist",
    ReasonCode.above_review_limit: "above the review limit",
}
HOLD_WAITS_OTHERWISE = "waiting for review"


def on_hold_orders(session: Session) -> list[OrderLine]:
    """Orders on hold, oldest first, since they were put on hold (their last `order_on_hold` event),
    each with what the hold waits for (HOLD_WAITS)."""
    rows = session.execute(
        select(t.Order.id, t.Order.placed_at, t.OrderEvent.at, t.OrderEvent.reason_code)
        .outerjoin(
            t.OrderEvent,
            (t.OrderEvent.order_id == t.Order.id) & (t.OrderEvent.type == OrderEventType.order_on_hold),
        )
        .where(t.Order.status == "on_hold")
        .order_by(t.Order.id, t.OrderEvent.seq)
    ).all()
    last_hold: dict[str, tuple[datetime, str | None]] = {}  # the rows come in order: the last one wins
    for order_id, placed, held, code in rows:
        last_hold[order_id] = (held or placed, code)
    lines = [
        OrderLine(order_id, "on_hold", since, _hold_waits(code))
        for order_id, (since, code) in last_hold.items()
    ]
    return sorted(lines, key=lambda line: (line.since, line.order_id))


def _hold_waits(code: str | None) -> str:
    try:
        return HOLD_WAITS.get(ReasonCode(code or ""), HOLD_WAITS_OTHERWISE)
    except ValueError:  # a code this build does not know
        return HOLD_WAITS_OTHERWISE


# A parcel in trouble that waits for support's choice, by the reason code of its order's last
# `shipment_exception` event: one held up (customs, damage) may move on and takes no choice.
CHOICE_WAITS: dict[ReasonCode, str] = {
    ReasonCode.lost_parcel: "lost parcel: reship or refund",
    ReasonCode.returned_to_sender: "returned to sender: reship or refund",
}


def parcels_awaiting_choice(session: Session) -> list[OrderLine]:
    """Orders with a parcel lost or coming back and no choice made yet (the order is still in
    `delivery_exception`: a reship or a refund moves it on), oldest first, since the parcel's trouble."""
    rows = session.execute(
        select(t.Order.id, t.OrderEvent.at, t.OrderEvent.reason_code)
        .join(t.OrderEvent, t.OrderEvent.order_id == t.Order.id)
        .where(
            t.Order.status == OrderStatus.delivery_exception,
            t.OrderEvent.type == OrderEventType.shipment_exception,
        )
        .order_by(t.Order.id, t.OrderEvent.seq)
    ).all()
    last_trouble: dict[str, tuple[datetime, str | None]] = {}  # the rows come in order: the last one wins
    for order_id, at, code in rows:
        last_trouble[order_id] = (at, code)
    lines = [
        OrderLine(order_id, OrderStatus.delivery_exception.value, since, CHOICE_WAITS[ReasonCode(code)])
        for order_id, (since, code) in last_trouble.items()
        if code in CHOICE_WAITS
    ]
    return sorted(lines, key=lambda line: (line.since, line.order_id))


def returns_awaiting_approval(session: Session) -> list[OrderLine]:
    """Returns the customer requested (the tracking page) that wait for support's approve or decline,
    oldest first, since the request; one line per request."""
    rows = session.execute(
        select(t.Return.order_id, t.Return.rma, t.Return.requested_at, t.Order.status)
        .join(t.Order, t.Order.id == t.Return.order_id)
        .where(t.Return.status == ReturnStatus.pending_approval)
        .order_by(t.Return.requested_at, t.Return.rma)
    ).all()
    return [
        OrderLine(order_id, status, at, f"return {rma} requested by the customer: approve or decline")
        for order_id, rma, at, status in rows
    ]


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
