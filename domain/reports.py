"""The business report (`starter.py report`, the console's dashboard and `/console/reports`): figures over
the rows the workflows mirror (`orders`, `order_lines`, `order_events`, `shipments`, `reservations`,
`returns`, `feedback`, `stock`) and the payment ledger (`payments`). One query per section, figures
computed in Python (percentiles too), so SQLite and PostgreSQL give the same numbers.

What a period means:
- figures about orders (funnel, cycle times, delivery, fulfilment, returns, feedback, stock demand) are of
  the orders *placed* in the period, whatever happened to them since;
- money is the ledger's, by the time each movement happened (as `export journal` lists it), approved
  movements only. Historical orders (`orders.imported_from`: past sales imported from files) moved no money
  here: they have no ledger rows, and their `total` is shown apart as "historical sales value".

Dates are UTC days; `until` is inclusive. Percentiles are nearest-rank (the smallest value with at least
q% of the values at or below it), in hours.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from db import SessionFactory
from domain.dashboard import overdue_deliveries
from domain.percentiles import nearest_rank
from models import tables as t
from models.events import OrderEventType, PaymentKind
from models.order_money import MoneyParts, movement_parts, stored_parts
from models.orders import OrderStatus, ReturnStatus

# returns whose goods never came back (nothing arrived in time; a customer's request support declined)
NOT_RETURNING = frozenset({ReturnStatus.expired.value, ReturnStatus.declined.value})
# returns still under way: authorized and awaited, or a customer's request waiting for approval
OPEN_RETURNS = frozenset({ReturnStatus.requested.value, ReturnStatus.pending_approval.value})

ZERO = Decimal("0.00")
CENT = Decimal("0.01")
LIST_LIMIT = 50  # rows of the long lists in the text and HTML reports (JSON has them all)


class ReportError(ValueError):
    """A period that cannot be reported on (a malformed date, since after until)."""


class Milestone(StrEnum):
    """The order events the report reads (written by workflows/order.py, fulfilment.py, parties.py)."""

    confirmed = OrderEventType.order_confirmed.value
    rejected = OrderEventType.order_rejected.value
    cancelled = OrderEventType.order_cancelled.value
    on_hold = OrderEventType.order_on_hold.value
    backordered = OrderEventType.order_backordered.value
    # units a warehouse could not find, waiting for stock
    shipment_backordered = OrderEventType.shipment_backordered.value
    stock_reserved = OrderEventType.stock_reserved.value
    # historical imports: the date promised to the customer
    delivery_promised = OrderEventType.delivery_promised.value


class Stage(StrEnum):
    placed_to_confirmed = "placed_to_confirmed"
    confirmed_to_shipped = "confirmed_to_shipped"
    shipped_to_delivered = "shipped_to_delivered"
    placed_to_delivered = "placed_to_delivered"


STAGE_LABELS = {
    Stage.placed_to_confirmed: "placed → confirmed",
    Stage.confirmed_to_shipped: "confirmed → shipped",
    Stage.shipped_to_delivered: "shipped → delivered",
    Stage.placed_to_delivered: "placed → delivered",
}


class GroupBy(StrEnum):
    all = "all"
    channel = "channel"
    warehouse = "warehouse"


# ---- the period ----


@dataclass(frozen=True)
class Period:
    since: date | None = None
    until: date | None = None  # inclusive

    @property
    def start(self) -> datetime | None:
        return datetime.combine(self.since, time(), UTC) if self.since else None

    @property
    def end(self) -> datetime | None:
        """Exclusive: the start of the day after `until`."""
        return datetime.combine(self.until + timedelta(days=1), time(), UTC) if self.until else None

    def where(
        self, column: ColumnElement[datetime] | InstrumentedAttribute[datetime]
    ) -> list[ColumnElement[bool]]:
        """SQL conditions keeping `column` (a timestamp) inside the period."""
        terms: list[ColumnElement[bool]] = []
        if self.start is not None:
            terms.append(column >= self.start)
        if self.end is not None:
            terms.append(column < self.end)
        return terms

    def describe(self) -> str:
        since = self.since.isoformat() if self.since else "the first order"
        until = self.until.isoformat() if self.until else "now"
        return f"{since} .. {until}"


def parse_period(
    since: str | None, until: str | None, names: tuple[str, str] = ("--since", "--until")
) -> Period:
    """`since`/`until` as given by a person: ISO dates (YYYY-MM-DD), since not after until. `names` are
    what the errors call them (the command's options, a web form's fields)."""
    period = Period(_parse_day(names[0], since), _parse_day(names[1], until))
    if period.since and period.until and period.since > period.until:
        raise ReportError(
            f"{names[0]} {period.since} is after {names[1]} {period.until}: nothing lies between them"
        )
    return period


def _parse_day(name: str, text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ReportError(f"{name} {text!r} is not a date: write it as YYYY-MM-DD, e.g. 2025-03-01") from None


# ---- the figures ----


@dataclass(frozen=True)
class Rate:
    part: int
    whole: int
    value: float | None  # part / whole, 4 decimals; None when there is nothing to divide by


def rate(part: int, whole: int) -> Rate:
    return Rate(part, whole, round(part / whole, 4) if whole else None)


@dataclass(frozen=True)
class Count:
    label: str
    count: int


@dataclass(frozen=True)
class Funnel:
    placed: int
    rejected: int
    held: int  # ever on hold for review
    backordered: int  # ever waiting for stock on order
    cancelled: int
    shipped: int  # a parcel handed to the carrier
    delivered: int  # a parcel delivered
    returned: int  # a returned parcel received back
    rejected_by_reason: list[Count] = field(default_factory=list)
    cancelled_by_reason: list[Count] = field(default_factory=list)


@dataclass(frozen=True)
class Percentiles:
    count: int
    p50_hours: float
    p90_hours: float
    p99_hours: float


@dataclass(frozen=True)
class CycleTime:
    stage: Stage
    by: GroupBy
    group: str  # "all", a channel or a warehouse
    times: Percentiles


@dataclass(frozen=True)
class Delivery:
    on_time: Rate  # orders delivered by the date promised, of the delivered orders
    overdue_now: list[str]  # shipped, no delivery confirmation past the SLA (the workflows' flag)


@dataclass(frozen=True)
class Fulfilment:
    fill_rate: Rate  # units shipped from the first allocation, of the units ordered (orders that shipped)
    split_shipments: Rate  # orders whose first allocation needed more than one shipment
    backorders: Rate  # orders that waited for stock, of the orders placed
    time_to_fill: Percentiles | None  # from waiting for stock to stock reserved
    still_waiting: int  # backordered orders with no stock reserved since


@dataclass(frozen=True)
class SkuReturns:
    sku: str
    shipped: int
    returned: int
    rate: Rate


@dataclass(frozen=True)
class ReasonReturns:
    reason: str
    returns: int
    units: int


@dataclass(frozen=True)
class Returns:
    orders_returning: Rate  # orders with a return, of the delivered orders
    by_sku: list[SkuReturns]
    by_reason: list[ReasonReturns]
    refunds: int
    refunded: dict[str, Decimal]  # per currency
    exchanges: int
    open: int  # parcels not back yet


# the orders row's money columns, in stored_parts' order (models/tables.py)
ORDER_MONEY = (
    t.Order.total,
    t.Order.subtotal,
    t.Order.discounts,
    t.Order.shipping,
    t.Order.shipping_tax,
    t.Order.tax,
    t.Order.taxes_included,
)


@dataclass(frozen=True)
class Money:
    key: str  # "all", a UTC day or a channel
    currency: str
    authorized: Decimal = ZERO
    captured: Decimal = ZERO
    refunded: Decimal = ZERO
    voided: Decimal = ZERO
    net: Decimal = ZERO  # what the business kept: captured less refunded less goodwill
    goodwill: Decimal = ZERO  # support's goodwill refunds (apart from `refunded`: returns, lost parcels)
    # `net` split as the journal splits each movement (models/order_money.py): goods + tax + shipping
    goods: Decimal = ZERO
    tax: Decimal = ZERO
    shipping: Decimal = ZERO
    discounts: Decimal = ZERO  # memo: the discounts behind `goods`


@dataclass(frozen=True)
class HistoricalSales:
    source: str  # olist, online-retail...
    currency: str
    orders: int
    value: Decimal  # the orders' totals: sales made before this system, never in its ledger


@dataclass(frozen=True)
class Revenue:
    totals: list[Money]
    per_day: list[Money]
    per_channel: list[Money]
    declined_authorizations: int
    historical: list[HistoricalSales]


@dataclass(frozen=True)
class FeedbackWeek:
    week: date  # the Monday
    count: int
    average: float


@dataclass(frozen=True)
class FeedbackFigures:
    count: int
    average: float | None
    distribution: dict[int, int]  # score 1..5 -> how many
    trend: list[FeedbackWeek]


@dataclass(frozen=True)
class StockCover:
    sku: str
    warehouse: str
    on_hand: int
    available: int
    units_out: int  # picked for the period's orders
    per_day: float
    days_of_cover: float | None  # None: nothing went out, so no end in sight


@dataclass(frozen=True)
class StockFigures:
    days: int  # the days the demand is spread over
    cover: list[StockCover]  # fewest days of cover first
    stock_outs: list[StockCover]  # nothing available now
    slow_movers: list[StockCover]  # on the shelf, nothing went out in the period


@dataclass(frozen=True)
class Report:
    period: Period
    generated_at: datetime
    orders: int
    historical_orders: int
    funnel: Funnel
    cycle_times: list[CycleTime]
    delivery: Delivery
    fulfilment: Fulfilment
    returns: Returns
    revenue: Revenue
    feedback: FeedbackFigures
    stock: StockFigures

    def cycle(self, stage: Stage, by: GroupBy = GroupBy.all, group: str = "all") -> Percentiles | None:
        for c in self.cycle_times:
            if (c.stage, c.by, c.group) == (stage, by, group):
                return c.times
        return None


# ---- the rows ----

NO_REASON_CODE = "(no reason code)"  # an event older than its code whose text named none (migration 0014)


@dataclass
class _Order:
    id: str
    channel: str
    status: str
    placed_at: datetime
    imported_from: str | None
    currency: str
    total: Decimal | None
    events: list[tuple[datetime, str, str]] = field(default_factory=list)  # (at, type, detail) by seq
    codes: list[str | None] = field(default_factory=list)  # the events' reason codes, in the same order
    shipments: list[_Shipment] = field(default_factory=list)
    ordered: int = 0
    rmas: list[str] = field(default_factory=list)

    def first(self, kind: Milestone) -> tuple[datetime, str] | None:
        return next(((at, detail) for at, type_, detail in self.events if type_ == kind), None)

    def last(self, kind: Milestone) -> tuple[datetime, str] | None:
        return next(((at, detail) for at, type_, detail in reversed(self.events) if type_ == kind), None)

    def reason(self, kind: Milestone) -> str:
        """Why the last `kind` event happened: its reason code (migration 0014 gave older rows theirs,
        where their text named one)."""
        for (_, type_, _), code in zip(reversed(self.events), reversed(self.codes), strict=True):
            if type_ == kind:
                return code or NO_REASON_CODE
        return "(no reason recorded)"

    @property
    def own_shipments(self) -> list[_Shipment]:
        """Its parcels, without exchange shipments (those carry a return's replacement goods)."""
        return [s for s in self.shipments if not any(s.id.startswith(f"{rma}-X") for rma in self.rmas)]

    def first_allocation(self) -> list[_Shipment]:
        """The shipments the first reservation made (named in the first `stock_reserved` event); an
        order with no such event (a historical one) counts all its own first-hand shipments."""
        own = self.own_shipments
        reserved = self.first(Milestone.stock_reserved)
        if reserved is None:
            return [s for s in own if s.replaces is None]
        ids = set(re.findall(r"(\S+) from \S+", reserved[1]))
        return [s for s in own if s.id in ids]


@dataclass
class _Shipment:
    id: str
    warehouse: str
    shipped_at: datetime | None
    delivered_at: datetime | None
    replaces: str | None
    picked: dict[str, int] = field(default_factory=dict)  # sku -> units that left the warehouse


def build_report(
    sessions: SessionFactory, period: Period, delivery_sla: timedelta, now: datetime | None = None
) -> Report:
    """Every section of the report for `period`; `delivery_sla` is the live promise (see `promised_by`)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    with sessions() as session:
        orders = _load_orders(session, period)
        # the later queries may see orders placed after the first one read them: those are left out
        returns = [row for row in _returns_rows(session, period) if row[1] in orders]
        for rma, order_id, *_ in returns:
            if rma not in orders[order_id].rmas:
                orders[order_id].rmas.append(rma)
        feedback_rows = [
            row
            for row in session.execute(
                _scoped(select(t.Feedback.order_id, t.Feedback.score, t.Feedback.created_at), period)
            )
            if row[0] in orders
        ]
        ledger = _ledger_rows(session, period)
        stock_rows = (
            session.execute(
                select(t.Stock.sku, t.Stock.warehouse, t.Stock.on_hand, t.Stock.reserved).order_by(
                    t.Stock.sku, t.Stock.warehouse
                )
            )
            .tuples()
            .all()
        )
        overdue = [line.order_id for line in overdue_deliveries(session) if line.order_id in orders]
    values = list(orders.values())
    return Report(
        period=period,
        generated_at=now,
        orders=len(values),
        historical_orders=sum(1 for o in values if o.imported_from),
        funnel=funnel(values, returns),
        cycle_times=cycle_times(values),
        delivery=Delivery(on_time=on_time(values, delivery_sla), overdue_now=overdue),
        fulfilment=fulfilment(values),
        returns=returns_figures(values, returns),
        revenue=revenue(ledger, values),
        feedback=feedback_figures([(score, at) for _, score, at in feedback_rows]),
        stock=stock_figures(stock_rows, values, period, now),
    )


def _scoped(query: Select[Any], period: Period) -> Select[Any]:
    """`query` over rows of orders placed in the period (it must select a column with the order id
    whose table joins to orders)."""
    order_id = query.selected_columns[0]
    return query.join(t.Order, t.Order.id == order_id).where(*period.where(t.Order.placed_at))


def _load_orders(session: Session, period: Period) -> dict[str, _Order]:
    orders = {
        row.id: _Order(
            row.id, row.channel, row.status, row.placed_at, row.imported_from, row.currency, row.total
        )
        for row in session.execute(
            select(
                t.Order.id,
                t.Order.channel,
                t.Order.status,
                t.Order.placed_at,
                t.Order.imported_from,
                t.Order.currency,
                t.Order.total,
            ).where(*period.where(t.Order.placed_at))
        )
    }
    events = _scoped(
        select(
            t.OrderEvent.order_id,
            t.OrderEvent.at,
            t.OrderEvent.type,
            t.OrderEvent.detail,
            t.OrderEvent.reason_code,
        ).where(t.OrderEvent.type.in_([m.value for m in Milestone])),
        period,
    ).order_by(t.OrderEvent.order_id, t.OrderEvent.seq)
    for order_id, at, type_, detail, code in session.execute(events):
        if order_id in orders:  # (placed after the orders were read: not in this report)
            orders[order_id].events.append((at, type_, detail))
            orders[order_id].codes.append(code)
    shipments: dict[str, _Shipment] = {}
    for row in session.execute(
        _scoped(
            select(
                t.Shipment.order_id,
                t.Shipment.id,
                t.Shipment.warehouse,
                t.Shipment.shipped_at,
                t.Shipment.delivered_at,
                t.Shipment.replaces,
            ),
            period,
        ).order_by(t.Shipment.order_id, t.Shipment.id)
    ):
        shipment = _Shipment(row.id, row.warehouse, row.shipped_at, row.delivered_at, row.replaces)
        shipments[row.id] = shipment
        if row.order_id in orders:
            orders[row.order_id].shipments.append(shipment)
    picked = _scoped(
        select(
            t.Reservation.order_id, t.Reservation.shipment_id, t.Reservation.sku, t.Reservation.quantity
        ).where(t.Reservation.status == "picked"),
        period,
    )
    for _, shipment_id, sku, quantity in session.execute(picked):
        if shipment_id in shipments:
            shipments[shipment_id].picked[sku] = shipments[shipment_id].picked.get(sku, 0) + quantity
    ordered = _scoped(select(t.OrderLine.order_id, func.sum(t.OrderLine.quantity)), period).group_by(
        t.OrderLine.order_id
    )
    for order_id, units in session.execute(ordered):
        if order_id in orders:
            orders[order_id].ordered = int(units or 0)
    return orders


def _returns_rows(session: Session, period: Period) -> list[tuple[str, str, str, str, Decimal, str, int]]:
    """(rma, order id, status, reason, refund amount, sku, units) per return line."""
    query = _scoped(
        select(
            t.Return.order_id,
            t.Return.rma,
            t.Return.status,
            t.Return.reason,
            t.Return.refund_amount,
            t.ReturnLine.sku,
            t.ReturnLine.quantity,
        ).outerjoin(t.ReturnLine, t.ReturnLine.rma == t.Return.rma),
        period,
    ).order_by(t.Return.rma, t.ReturnLine.sku)
    return [
        (rma, order_id, status, reason, Decimal(refund or 0), sku or "", int(qty or 0))
        for order_id, rma, status, reason, refund, sku, qty in session.execute(query)
    ]


LedgerRow = tuple[datetime, str, str, str, Decimal, str, MoneyParts]


def _ledger_rows(session: Session, period: Period) -> list[LedgerRow]:
    """(at, kind, status, currency, amount, channel, its order's money parts) of the ledger's movements
    in the period."""
    query = (
        select(
            t.Payment.created_at,
            t.Payment.kind,
            t.Payment.status,
            t.Payment.currency,
            t.Payment.amount,
            t.Order.channel,
            *ORDER_MONEY,
        )
        .outerjoin(t.Order, t.Order.id == t.Payment.order_id)
        .where(*period.where(t.Payment.created_at))
        .order_by(t.Payment.created_at, t.Payment.id)
    )
    return [
        (at, kind, status, cur, Decimal(amount), channel or "?", stored_parts(*money))
        for at, kind, status, cur, amount, channel, *money in (session.execute(query))
    ]


# ---- the sections ----


def funnel(orders: list[_Order], returns: Iterable[tuple[str, str, str, str, Decimal, str, int]]) -> Funnel:
    def reasons(status: OrderStatus, kind: Milestone) -> list[Count]:
        counts = Counter(o.reason(kind) for o in orders if o.status == status)
        return [Count(label, n) for label, n in sorted(counts.items(), key=lambda r: (-r[1], r[0]))]

    back = {Milestone.backordered, Milestone.shipment_backordered}
    came_back = (ReturnStatus.refunded.value, ReturnStatus.exchanged.value)
    returned = {order_id for _, order_id, status, *_ in returns if status in came_back}
    rejected, cancelled = (
        reasons(OrderStatus.rejected, Milestone.rejected),
        reasons(OrderStatus.cancelled, Milestone.cancelled),
    )
    return Funnel(
        placed=len(orders),
        rejected=sum(c.count for c in rejected),
        held=sum(1 for o in orders if o.first(Milestone.on_hold)),
        backordered=sum(1 for o in orders if any(type_ in back for _, type_, _ in o.events)),
        cancelled=sum(c.count for c in cancelled),
        shipped=sum(1 for o in orders if any(s.shipped_at for s in o.own_shipments)),
        delivered=sum(1 for o in orders if any(s.delivered_at for s in o.own_shipments)),
        returned=len(returned),
        rejected_by_reason=rejected,
        cancelled_by_reason=cancelled,
    )


def percentiles(hours: list[float]) -> Percentiles | None:
    if not hours:
        return None
    values = sorted(hours)
    p50, p90, p99 = (round(nearest_rank(values, p), 2) for p in (50, 90, 99))
    return Percentiles(len(values), p50, p90, p99)


def _hours(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds() / 3600


def cycle_times(orders: list[_Order]) -> list[CycleTime]:
    """Placed → confirmed per order; the later stages per shipment (a split order's parcels each count),
    so that they can be grouped by the warehouse that sent them."""
    samples: dict[tuple[Stage, GroupBy, str], list[float]] = defaultdict(list)

    def add(stage: Stage, order: _Order, hours: float, warehouse: str | None = None) -> None:
        samples[(stage, GroupBy.all, "all")].append(hours)
        samples[(stage, GroupBy.channel, order.channel)].append(hours)
        if warehouse is not None:
            samples[(stage, GroupBy.warehouse, warehouse)].append(hours)

    for order in orders:
        confirmed = order.first(Milestone.confirmed)
        if confirmed:
            add(Stage.placed_to_confirmed, order, _hours(confirmed[0], order.placed_at))
        for s in order.own_shipments:
            if s.shipped_at and confirmed:
                add(Stage.confirmed_to_shipped, order, _hours(s.shipped_at, confirmed[0]), s.warehouse)
            if s.delivered_at and s.shipped_at:
                add(Stage.shipped_to_delivered, order, _hours(s.delivered_at, s.shipped_at), s.warehouse)
            if s.delivered_at:
                add(Stage.placed_to_delivered, order, _hours(s.delivered_at, order.placed_at), s.warehouse)
    order_of = {stage: n for n, stage in enumerate(Stage)}
    result = [
        CycleTime(stage, by, group, p) for (stage, by, group), v in samples.items() if (p := percentiles(v))
    ]
    return sorted(result, key=lambda c: (order_of[c.stage], list(GroupBy).index(c.by), c.group))


_PROMISE_IN_CONFIRMATION = re.compile(r"expected delivery by (\d{4}-\d{2}-\d{2} \d{2}:\d{2}) UTC")


def promised_by(order: _Order, delivery_sla: timedelta) -> datetime | None:
    """The latest on-time delivery: a `delivery_promised` event's date (historical orders: the whole
    day), else the expected delivery the order's confirmation announced (the workflow's rule: confirmed
    + OMS_DELIVERY_SLA, as it was then), else confirmed + `delivery_sla`; None for an unconfirmed order."""
    if promised := order.last(Milestone.delivery_promised):
        day = date.fromisoformat(promised[1].strip()[:10])
        return datetime.combine(day + timedelta(days=1), time(), UTC) - timedelta(microseconds=1)
    confirmed = order.first(Milestone.confirmed)
    if confirmed is None:
        return None
    if match := _PROMISE_IN_CONFIRMATION.search(confirmed[1]):
        # the event shows minutes: the promise is to the end of that minute
        return datetime.fromisoformat(match[1]).replace(tzinfo=UTC) + timedelta(
            seconds=59, microseconds=999999
        )
    return confirmed[0] + delivery_sla


def on_time(orders: list[_Order], delivery_sla: timedelta) -> Rate:
    """Delivered orders (their last parcel) by the promised time, of the delivered orders with a promise."""
    delivered = on_time_ = 0
    for order in orders:
        times = [s.delivered_at for s in order.own_shipments if s.delivered_at]
        promise = promised_by(order, delivery_sla)
        if times and promise is not None:
            delivered += 1
            on_time_ += max(times) <= promise
    return rate(on_time_, delivered)


def fulfilment(orders: list[_Order]) -> Fulfilment:
    shipped_units = ordered_units = split = allocated = backordered = waiting = 0
    fill_hours: list[float] = []
    back = (Milestone.backordered.value, Milestone.shipment_backordered.value)
    for order in orders:
        first = order.first_allocation()
        if first:
            allocated += 1
            split += len(first) > 1
        if any(s.shipped_at for s in order.own_shipments):
            ordered_units += order.ordered
            shipped_units += sum(sum(s.picked.values()) for s in first if s.shipped_at)
        waited = next((at for at, type_, _ in order.events if type_ in back), None)
        if waited is not None:
            backordered += 1
            filled = next(
                (at for at, type_, _ in order.events if type_ == Milestone.stock_reserved and at > waited),
                None,
            )
            if filled is None:
                waiting += 1
            else:
                fill_hours.append(_hours(filled, waited))
    return Fulfilment(
        fill_rate=rate(shipped_units, ordered_units),
        split_shipments=rate(split, allocated),
        backorders=rate(backordered, len(orders)),
        time_to_fill=percentiles(fill_hours),
        still_waiting=waiting,
    )


def returns_figures(
    orders: list[_Order], rows: list[tuple[str, str, str, str, Decimal, str, int]]
) -> Returns:
    """Returns of the period's orders; an expired authorization (the parcel never came) counts nowhere
    but in `open` until it expires."""
    shipped: Counter[str] = Counter()
    for order in orders:
        for s in order.own_shipments:
            if s.shipped_at:
                shipped.update(s.picked)
    returned: Counter[str] = Counter()
    reasons: dict[str, set[str]] = defaultdict(set)
    units_by_reason: Counter[str] = Counter()
    returns: dict[str, tuple[str, str, Decimal, str]] = {}  # rma -> (order, status, refund, currency)
    currency = {o.id: o.currency for o in orders}
    for rma, order_id, status, reason, refund, sku, qty in rows:
        returns[rma] = (order_id, status, refund, currency[order_id])
        if status in NOT_RETURNING:
            continue
        label = " ".join(reason.split()).lower() or "(no reason given)"
        returned[sku] += qty
        reasons[label].add(rma)
        units_by_reason[label] += qty
    refunded: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for _, status, refund, cur in returns.values():
        if status == ReturnStatus.refunded.value:
            refunded[cur] += refund
    delivered = {o.id for o in orders if any(s.delivered_at for s in o.own_shipments)}
    returning = {order_id for order_id, status, *_ in returns.values() if status not in NOT_RETURNING}
    by_sku = [
        SkuReturns(sku, shipped[sku], returned[sku], rate(returned[sku], shipped[sku]))
        for sku in sorted(set(returned) | set(shipped))
        if returned[sku]
    ]
    return Returns(
        orders_returning=rate(len(returning & delivered), len(delivered)),
        by_sku=sorted(by_sku, key=lambda r: (-(r.rate.value or 0), r.sku)),
        by_reason=sorted(
            (ReasonReturns(label, len(rmas), units_by_reason[label]) for label, rmas in reasons.items()),
            key=lambda r: (-r.returns, r.reason),
        ),
        refunds=sum(1 for _, status, *_ in returns.values() if status == ReturnStatus.refunded.value),
        refunded={cur: amount.quantize(CENT) for cur, amount in sorted(refunded.items())},
        exchanges=sum(1 for _, status, *_ in returns.values() if status == ReturnStatus.exchanged.value),
        open=sum(1 for _, status, *_ in returns.values() if status in OPEN_RETURNS),
    )


_MONEY_FIELD = {
    PaymentKind.authorization: "authorized",
    PaymentKind.increment: "authorized",
    PaymentKind.capture: "captured",
    PaymentKind.refund: "refunded",
    PaymentKind.goodwill_refund: "goodwill",
    PaymentKind.void: "voided",
}


# the cash movements, signed as the journal signs them (domain/journal.py)
_CASH_SIGN = {PaymentKind.capture: 1, PaymentKind.refund: -1, PaymentKind.goodwill_refund: -1}


def revenue(ledger: list[LedgerRow], orders: list[_Order]) -> Revenue:
    """The ledger's approved movements: totals, per UTC day and per channel, each per currency; the
    cash movements' net also split into goods, tax and shipping as the journal splits them."""
    sums: dict[tuple[str, str, str], dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    declined = 0
    for at, kind, status, currency, amount, channel, parts in ledger:
        if status != "approved":
            declined += kind == PaymentKind.authorization
            continue
        name = _MONEY_FIELD[PaymentKind(kind)]
        sign = _CASH_SIGN.get(PaymentKind(kind))
        split = movement_parts(amount * sign, parts) if sign else None
        for key in (("all", "all"), ("day", at.astimezone(UTC).date().isoformat()), ("channel", channel)):
            values = sums[(*key, currency)]
            values[name] += amount
            if split is not None:
                values["goods"] += split.net
                values["tax"] += split.tax
                values["shipping"] += split.shipping
                values["discounts"] += split.discount

    def rows(group: str) -> list[Money]:
        found = [(key, currency, values) for (g, key, currency), values in sorted(sums.items()) if g == group]
        return [
            Money(
                key,
                currency,
                **{k: v.quantize(CENT) for k, v in values.items()},
                net=(values["captured"] - values["refunded"] - values["goodwill"]).quantize(CENT),
            )
            for key, currency, values in found
        ]

    historical: dict[tuple[str, str], tuple[int, Decimal]] = {}
    for o in orders:
        if o.imported_from:
            n, value = historical.get((o.imported_from, o.currency), (0, ZERO))
            historical[(o.imported_from, o.currency)] = (n + 1, value + (o.total or ZERO))
    return Revenue(
        totals=rows("all"),
        per_day=rows("day"),
        per_channel=rows("channel"),
        declined_authorizations=declined,
        historical=[
            HistoricalSales(source, cur, n, value.quantize(CENT))
            for (source, cur), (n, value) in sorted(historical.items())
        ],
    )


def feedback_figures(rows: list[tuple[int, datetime]]) -> FeedbackFigures:
    """Scores of the period's orders; the trend is per week (Monday, UTC) the feedback was given."""
    weeks: dict[date, list[int]] = defaultdict(list)
    for score, at in rows:
        day = at.astimezone(UTC).date()
        weeks[day - timedelta(days=day.weekday())].append(score)
    scores = [score for score, _ in rows]
    return FeedbackFigures(
        count=len(scores),
        average=round(sum(scores) / len(scores), 2) if scores else None,
        distribution={n: scores.count(n) for n in range(1, 6)},
        trend=[FeedbackWeek(week, len(v), round(sum(v) / len(v), 2)) for week, v in sorted(weeks.items())],
    )


def stock_figures(
    stock: Iterable[tuple[str, str, int, int]], orders: list[_Order], period: Period, now: datetime
) -> StockFigures:
    """Days of cover: units available now / units a day picked for the period's orders, per SKU and
    warehouse. The demand is spread over the period's days (an open start: from the first order's day,
    an open end: to today)."""
    out: Counter[tuple[str, str]] = Counter()
    for order in orders:
        for s in order.own_shipments:
            for sku, qty in s.picked.items():
                out[(sku, s.warehouse)] += qty
    first = period.since or min((o.placed_at.astimezone(UTC).date() for o in orders), default=now.date())
    last = period.until or now.date()
    days = max(1, (last - first).days + 1)
    cover = []
    for sku, warehouse, on_hand, reserved in stock:
        units = out[(sku, warehouse)]
        per_day = units / days
        available = on_hand - reserved
        cover.append(
            StockCover(
                sku,
                warehouse,
                on_hand,
                available,
                units,
                round(per_day, 3),
                round(available / per_day, 1) if units else None,
            )
        )
    cover.sort(key=lambda c: (c.days_of_cover is None, c.days_of_cover or 0, c.sku, c.warehouse))
    return StockFigures(
        days=days,
        cover=cover,
        stock_outs=[c for c in cover if c.available <= 0],
        slow_movers=sorted(
            (c for c in cover if c.on_hand > 0 and c.units_out == 0), key=lambda c: (-c.on_hand, c.sku)
        ),
    )
