"""Issue 13: `starter.py report` and `export journal`. The figures are checked against values worked out
by hand on a small fixture of orders in known states, written as rows directly (the rows the
workflows mirror), in a week of March 1999 that no other test places orders in: the database is the
suite's, shared with other tests, and every figure but the stock's is of the orders placed in the
period (or, for money, of the ledger rows in it). The stock rows are global: their checks look at
this fixture's SKUs only.

Times below are hours after T = 1999-03-01 00:00 UTC (a Monday).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from temporalio.client import Client

from config import Settings
from db import SessionFactory
from domain.api_keys import Role, create_key
from domain.journal import JournalMismatch, journal, write_csv
from domain.report_html import render_html
from domain.reports import (
    NO_REASON_CODE,
    Count,
    GroupBy,
    PaymentKind,
    Percentiles,
    Period,
    Rate,
    Report,
    ReportError,
    Stage,
    build_report,
    parse_period,
    revenue,
)
from models import tables as t
from models.events import ReasonCode
from tests.api_server import ApiServer
from tests.helpers import (
    add_order_row,
    add_products,
    add_warehouse,
    cli,
    order_doc,
    place,
    set_stock,
    unique,
    wait_status,
)
from tests.test_console_session import sign_in

T = datetime(1999, 3, 1, tzinfo=UTC)
SINCE, UNTIL = "1999-03-01", "1999-03-10"
PERIOD = Period(date(1999, 3, 1), date(1999, 3, 10))
SLA = timedelta(days=7)
NOW = datetime(1999, 3, 20, tzinfo=UTC)


def h(hours: float) -> datetime:
    return T + timedelta(hours=hours)


@dataclass(frozen=True)
class Fixture:
    ids: dict[str, str]  # O1..O8 -> order id
    skus: dict[str, str]  # A, B, C -> sku
    wa: str
    wb: str


class Rows:
    """Writes the fixture's rows in one transaction."""

    def __init__(self, session, customer: str) -> None:  # type: ignore[no-untyped-def]
        self.s, self.customer, self.seq = session, customer, 0

    def order(self, oid: str, channel: str, placed: float, status: str, lines: list[tuple[str, int]], **kw):  # type: ignore[no-untyped-def]
        add_order_row(
            self.s,
            oid,
            self.customer,
            channel=channel,
            status=status,
            payment_status=kw.pop("payment_status", "captured"),
            total=kw.pop("total", Decimal("10.00") * sum(q for _, q in lines)),
            placed_at=h(placed),
            **kw,
        )
        for n, (sku, qty) in enumerate(lines, start=1):
            self.s.add(
                t.OrderLine(order_id=oid, line_no=n, sku=sku, quantity=qty, unit_price=Decimal("10.00"))
            )

    def event(
        self, oid: str, at: float, type_: str, detail: str = "", code: ReasonCode | None = None
    ) -> None:
        self.seq += 1
        self.s.add(
            t.OrderEvent(order_id=oid, seq=self.seq, at=h(at), type=type_, detail=detail, reason_code=code)
        )

    def shipment(self, sid: str, oid: str, wh: str, picked: dict[str, int], shipped: float | None, delivered: float | None, status: str = "delivered") -> None:  # fmt: skip
        self.s.add(
            t.Shipment(
                id=sid,
                order_id=oid,
                warehouse=wh,
                status=status,
                shipped_at=h(shipped) if shipped is not None else None,
                delivered_at=h(delivered) if delivered is not None else None,
            )
        )
        for sku, qty in picked.items():
            self.s.add(
                t.Reservation(
                    order_id=oid, shipment_id=sid, sku=sku, warehouse=wh, quantity=qty, status="picked"
                )
            )

    def pay(self, oid: str, kind: str, amount: str, at: float, status: str = "approved") -> None:
        self.s.add(
            t.Payment(
                order_id=oid,
                kind=kind,
                status=status,
                amount=Decimal(amount),
                currency="EUR",
                idempotency_key=unique(f"{oid}:{kind}"),
                reference=unique("pay"),
                decline_code="card_declined" if status == "declined" else None,
                created_at=h(at),
            )
        )

    def ret(self, rma: str, oid: str, status: str, reason: str, sku: str, wh: str, refund: str = "0") -> None:
        self.s.add(
            t.Return(
                rma=rma,
                order_id=oid,
                status=status,
                reason=reason,
                refund_amount=Decimal(refund),
                requested_at=h(60),
            )
        )
        self.s.flush()
        self.s.add(t.ReturnLine(rma=rma, sku=sku, warehouse=wh, quantity=1, unit_price=Decimal("10.00")))


@pytest.fixture(scope="module")
def fx(sessions: SessionFactory) -> Iterator[Fixture]:
    wa, wb = add_warehouse(sessions, prefix="RA"), add_warehouse(sessions, prefix="RB")
    skus = add_products(sessions, {"A": 12, "B": 0, "C": 5}, warehouse=wa)
    A, B, C = skus["A"], skus["B"], skus["C"]
    set_stock(sessions, B, wb, 1)
    set_stock(sessions, C, wb, 0)
    ids = {f"O{n}": unique(f"R{n}") for n in range(1, 9)}
    o = ids
    with sessions.begin() as session:
        customer = unique("CUST")
        session.add(t.Customer(id=customer, name="Report Fixture", email="fixture@example.com"))
        r = Rows(session, customer)
        # O1 web: delivered, one unit of two returned and refunded
        r.order(o["O1"], "web", 0, "partially_returned", [(A, 2)])
        r.event(o["O1"], 1, "stock_reserved", f"{o['O1']}-S1 from {wa}")
        r.event(o["O1"], 1, "order_confirmed", "expected delivery by 1999-03-08 01:00 UTC")
        r.shipment(f"{o['O1']}-S1", o["O1"], wa, {A: 2}, 25, 49)
        r.pay(o["O1"], "authorization", "20.00", 0)
        r.pay(o["O1"], "capture", "20.00", 24)  # exactly 1999-03-02 00:00: a day's first instant
        r.pay(o["O1"], "refund", "10.00", 100)
        r.ret(f"RMA-{o['O1']}-1", o["O1"], "refunded", "Too small", A, wa, refund="10.00")
        # O2 phone: split over two warehouses, delivered late; one unit exchanged
        r.order(o["O2"], "phone", 2, "delivered", [(A, 1), (B, 1)])
        r.event(o["O2"], 4, "stock_reserved", f"{o['O2']}-S1 from {wa}, {o['O2']}-S2 from {wb}")
        r.event(o["O2"], 4, "order_confirmed", "expected delivery by 1999-03-03 04:00 UTC")
        r.shipment(f"{o['O2']}-S1", o["O2"], wa, {A: 1}, 30, 80)
        r.shipment(f"{o['O2']}-S2", o["O2"], wb, {B: 1}, 28, 60)
        r.pay(o["O2"], "authorization", "20.00", 2)
        r.pay(o["O2"], "capture", "10.00", 28)
        r.pay(o["O2"], "capture", "10.00", 30)
        r.ret(f"RMA-{o['O2']}-1", o["O2"], "exchanged", " too  small ", B, wb)
        # the exchange's own parcel is not one of the order's: no cycle time, no funnel step
        r.shipment(f"RMA-{o['O2']}-1-X1", o["O2"], wb, {}, 120, 150)
        # O3 web: card declined; O4 web: unknown SKUs
        r.order(o["O3"], "web", 3, "rejected", [(C, 1)], payment_status="declined")
        r.event(o["O3"], 3, "order_rejected", "payment declined: card_declined", ReasonCode.payment_declined)
        r.pay(o["O3"], "authorization", "15.00", 3, status="declined")
        r.order(o["O4"], "web", 5, "rejected", [(C, 1)], payment_status="pending")
        r.event(
            o["O4"],
            5,
            "order_rejected",
            "line 1: unknown SKU FOO-1; line 2: unknown SKU FOO-2",
            ReasonCode.unknown_sku,
        )
        # O5 store: held for review, then cancelled; the authorization voided
        r.order(o["O5"], "store", 6, "cancelled", [(C, 2)], payment_status="voided")
        r.event(o["O5"], 6, "order_on_hold", "total above the review limit")
        r.event(
            o["O5"],
            10,
            "order_cancelled",
            "cancelled: customer changed mind (by cli:ann)",
            ReasonCode.cancelled_by_support,
        )
        r.pay(o["O5"], "authorization", "12.00", 6)
        r.pay(o["O5"], "void", "12.00", 10)
        # O6 web: backordered 12 h; a short pick sent the third unit later (not the first allocation)
        r.order(o["O6"], "web", 8, "delivered", [(A, 3)])
        r.event(o["O6"], 8, "order_backordered", "out of stock: A short by 3; on order: 10 x A")
        r.event(o["O6"], 20, "stock_reserved", f"{o['O6']}-S1 from {wa}")
        r.event(o["O6"], 20, "order_confirmed", "expected delivery by 1999-03-08 20:00 UTC")
        r.event(o["O6"], 35, "shipment_backordered", f"{o['O6']}-S2: 1 x A waiting for stock")
        r.event(o["O6"], 50, "stock_reserved", f"{o['O6']}-S2 from {wa}")
        r.shipment(f"{o['O6']}-S1", o["O6"], wa, {A: 2}, 40, 70)
        r.shipment(f"{o['O6']}-S2", o["O6"], wa, {A: 1}, 60, 90)
        r.pay(o["O6"], "authorization", "30.00", 8)
        r.pay(o["O6"], "capture", "20.00", 40)
        r.pay(o["O6"], "capture", "10.00", 60)
        r.ret(f"RMA-{o['O6']}-1", o["O6"], "requested", "Damaged", A, wa)
        # O7 marketplace: shipped, flagged overdue, not delivered
        r.order(o["O7"], "marketplace", 10, "shipped", [(B, 1)])
        r.event(o["O7"], 11, "stock_reserved", f"{o['O7']}-S1 from {wb}")
        r.event(o["O7"], 11, "order_confirmed", "expected delivery by 1999-03-08 11:00 UTC")
        r.event(
            o["O7"], 200, "delivery_overdue", f"{o['O7']}-S1: no delivery confirmation 7 days after shipping"
        )
        r.shipment(f"{o['O7']}-S1", o["O7"], wb, {B: 1}, 20, None, status="shipped")
        r.pay(o["O7"], "authorization", "10.00", 10)
        r.pay(o["O7"], "capture", "10.00", 20)
        # O8: a historical olist sale (no ledger rows), promised for 1999-03-05; its return expired
        r.order(
            o["O8"],
            "web",
            24,
            "delivered",
            [(C, 1)],
            currency="BRL",
            total=Decimal("99.90"),
            imported_from="olist",
        )
        r.event(o["O8"], 24, "delivery_promised", "1999-03-05")
        r.shipment(f"{o['O8']}-S1", o["O8"], wb, {C: 1}, 30, 96)
        r.ret(f"RMA-{o['O8']}-1", o["O8"], "expired", "changed mind", C, wb)
        for oid, score, at in (("O1", 5, 50), ("O2", 2, 90), ("O8", 4, 100), ("O6", 3, 200)):
            session.add(t.Feedback(order_id=o[oid], score=score, created_at=h(at)))
    yield Fixture(ids, skus, wa, wb)


@pytest.fixture(scope="module")
def report(sessions: SessionFactory, fx: Fixture) -> Report:
    return build_report(sessions, PERIOD, SLA, now=NOW)


def test_the_funnel(report: Report, fx: Fixture):
    f = report.funnel
    assert (report.orders, report.historical_orders) == (8, 1)  # O1..O8; O8 imported
    # rejected O3, O4; held O5; backordered O6 (two backorder events, one order); cancelled O5;
    # shipped O1 O2 O6 O7 O8; delivered O1 O2 O6 O8; returned (refunded or exchanged) O1 O2
    assert (f.placed, f.rejected, f.held, f.backordered, f.cancelled) == (8, 2, 1, 1, 1)
    assert (f.shipped, f.delivered, f.returned) == (5, 4, 2)
    assert f.rejected_by_reason == [Count(ReasonCode.payment_declined, 1), Count(ReasonCode.unknown_sku, 1)]
    assert f.cancelled_by_reason == [Count(ReasonCode.cancelled_by_support, 1)]


def test_cycle_times_per_stage_channel_and_warehouse(report: Report, fx: Fixture):
    # placed -> confirmed, per order: O1 1, O2 2, O6 12, O7 1 -> [1, 1, 2, 12]; nearest rank of 4 values:
    # p50 the 2nd (1), p90 and p99 the 4th (12)
    assert report.cycle(Stage.placed_to_confirmed) == Percentiles(4, 1.0, 12.0, 12.0)
    assert report.cycle(Stage.placed_to_confirmed, GroupBy.channel, "web") == Percentiles(2, 1.0, 12.0, 12.0)
    assert report.cycle(Stage.placed_to_confirmed, GroupBy.warehouse, fx.wa) is None  # no warehouse yet
    # confirmed -> shipped, per parcel: O1 24 (WA), O2 26 (WA) 24 (WB), O6 20 40 (WA), O7 9 (WB)
    # -> [9, 20, 24, 24, 26, 40]: p50 the 3rd, p90 the 6th
    assert report.cycle(Stage.confirmed_to_shipped) == Percentiles(6, 24.0, 40.0, 40.0)
    assert report.cycle(Stage.confirmed_to_shipped, GroupBy.warehouse, fx.wa) == Percentiles(
        4, 24.0, 40.0, 40.0
    )
    assert report.cycle(Stage.confirmed_to_shipped, GroupBy.warehouse, fx.wb) == Percentiles(
        2, 9.0, 24.0, 24.0
    )
    assert report.cycle(Stage.confirmed_to_shipped, GroupBy.channel, "marketplace") == Percentiles(
        1, 9.0, 9.0, 9.0
    )
    # shipped -> delivered: O1 24, O2 50 32, O6 30 30, O8 66 (the exchange parcel left out)
    assert report.cycle(Stage.shipped_to_delivered) == Percentiles(6, 30.0, 66.0, 66.0)
    # placed -> delivered: O1 49, O2 78 58, O6 62 82, O8 72 -> [49, 58, 62, 72, 78, 82]
    assert report.cycle(Stage.placed_to_delivered) == Percentiles(6, 62.0, 82.0, 82.0)
    assert report.cycle(Stage.placed_to_delivered, GroupBy.channel, "web") == Percentiles(4, 62.0, 82.0, 82.0)
    assert report.cycle(Stage.placed_to_delivered, GroupBy.warehouse, fx.wb) == Percentiles(
        2, 58.0, 72.0, 72.0
    )


def test_on_time_and_overdue(report: Report, fx: Fixture):
    # O1 by 03-08 01:00, delivered 03-03 01:00: on time. O2 by 03-03 04:00, last parcel 03-04 08:00: late.
    # O6 by 03-08 20:00, last parcel 03-04 18:00: on time. O8 promised 1999-03-05, delivered 03-05 00:00.
    assert report.delivery.on_time == Rate(3, 4, 0.75)
    assert report.delivery.overdue_now == [fx.ids["O7"]]


def test_fill_split_and_backorders(report: Report):
    # orders that shipped: O1 2 of 2, O2 2 of 2, O6 2 of 3 (the third unit came in a later shipment),
    # O7 1 of 1, O8 1 of 1 -> 8 of 9 units from the first allocation
    f = report.fulfilment
    assert f.fill_rate == Rate(8, 9, 0.8889)
    assert f.split_shipments == Rate(1, 5, 0.2)  # O2, of the five orders with an allocation
    assert f.backorders == Rate(1, 8, 0.125)  # O6
    assert f.time_to_fill == Percentiles(1, 12.0, 12.0, 12.0)  # O6: backordered at 8 h, reserved at 20 h
    assert f.still_waiting == 0


def test_returns(report: Report, fx: Fixture):
    r = report.returns
    A, B = fx.skus["A"], fx.skus["B"]
    # shipped units: A 2 (O1) + 1 (O2) + 3 (O6) = 6, B 1 (O2) + 1 (O7) = 2; returned (expired left out):
    # A 1 (O1) + 1 (O6, on its way) = 2, B 1 (O2)
    assert [(x.sku, x.shipped, x.returned, x.rate.value) for x in r.by_sku] == [
        (B, 2, 1, 0.5),
        (A, 6, 2, 0.3333),
    ]
    assert [(x.reason, x.returns, x.units) for x in r.by_reason] == [("too small", 2, 2), ("damaged", 1, 1)]
    assert r.orders_returning == Rate(3, 4, 0.75)  # O1 O2 O6 of the delivered O1 O2 O6 O8
    assert (r.refunds, r.refunded, r.exchanges, r.open) == (1, {"EUR": Decimal("10.00")}, 1, 1)


def test_revenue_from_the_ledger(report: Report):
    rev = report.revenue
    # authorized 20 + 20 + 12 + 30 + 10 (O3's declined 15 moved nothing); captured 20 + 10 + 10 + 20 +
    # 10 + 10; refunded 10 (O1); voided 12 (O5); net = captured - refunded
    (total,) = rev.totals
    assert (total.currency, total.authorized, total.captured, total.refunded, total.voided, total.net) == (
        "EUR",
        Decimal("92.00"),
        Decimal("80.00"),
        Decimal("10.00"),
        Decimal("12.00"),
        Decimal("70.00"),
    )
    assert rev.declined_authorizations == 1
    per_day = {m.key: (m.captured, m.refunded, m.net) for m in rev.per_day}
    assert per_day == {
        "1999-03-01": (Decimal("10.00"), Decimal("0.00"), Decimal("10.00")),  # O7's capture at 20 h
        "1999-03-02": (Decimal("60.00"), Decimal("0.00"), Decimal("60.00")),  # 24 h, 28 h, 30 h, 40 h
        "1999-03-03": (Decimal("10.00"), Decimal("0.00"), Decimal("10.00")),  # O6's second parcel
        "1999-03-05": (Decimal("0.00"), Decimal("10.00"), Decimal("-10.00")),  # O1's refund
    }
    per_channel = {m.key: (m.authorized, m.net) for m in rev.per_channel}
    assert per_channel == {
        "web": (Decimal("50.00"), Decimal("40.00")),  # O1 20/20-10, O6 30/30
        "phone": (Decimal("20.00"), Decimal("20.00")),
        "store": (Decimal("12.00"), Decimal("0.00")),  # authorized and voided
        "marketplace": (Decimal("10.00"), Decimal("10.00")),
    }
    assert [(x.source, x.currency, x.orders, x.value) for x in rev.historical] == [
        ("olist", "BRL", 1, Decimal("99.90"))
    ]


def test_feedback(report: Report):
    fb = report.feedback
    assert (fb.count, fb.average) == (4, 3.5)  # 5, 2, 4, 3
    assert fb.distribution == {1: 0, 2: 1, 3: 1, 4: 1, 5: 1}
    # week of Monday 03-01: 5, 2, 4 -> 3.67; week of 03-08: 3
    assert [(w.week, w.count, w.average) for w in fb.trend] == [
        (date(1999, 3, 1), 3, 3.67),
        (date(1999, 3, 8), 1, 3.0),
    ]


def test_stock_cover_outs_and_slow_movers(report: Report, fx: Fixture):
    st = report.stock
    A, B, C = fx.skus["A"], fx.skus["B"], fx.skus["C"]
    ours = {(c.sku, c.warehouse): c for c in st.cover if c.sku in fx.skus.values()}
    assert st.days == 10  # 1999-03-01 .. 1999-03-10
    # A@WA: 6 units picked / 10 days = 0.6 a day, 12 available -> 20 days; B@WB: 2 -> 0.2, 1 left -> 5
    # days; C@WB: 1 picked (O8), nothing left -> 0 days; A's and C's other rows sold nothing
    assert [(k, c.units_out, c.per_day, c.days_of_cover) for k, c in sorted(ours.items())] == sorted(
        [
            ((A, fx.wa), 6, 0.6, 20.0),
            ((B, fx.wa), 0, 0.0, None),
            ((B, fx.wb), 2, 0.2, 5.0),
            ((C, fx.wa), 0, 0.0, None),
            ((C, fx.wb), 1, 0.1, 0.0),
        ]
    )
    assert {(c.sku, c.warehouse) for c in st.stock_outs if c.sku in fx.skus.values()} == {
        (B, fx.wa),
        (C, fx.wb),
    }
    assert [(c.sku, c.warehouse) for c in st.slow_movers if c.sku in fx.skus.values()] == [(C, fx.wa)]


def test_the_journal_sums_to_the_ledger(sessions: SessionFactory, fx: Fixture, report: Report):
    entries = journal(sessions, PERIOD)
    # approved movements only: 5 authorizations, 6 captures, 1 refund, 1 void (O3's decline is no entry)
    assert len(entries.rows) == 13 and entries.balanced
    assert [(x.kind.value, x.rows, x.amount) for x in entries.totals] == [
        ("authorization", 5, Decimal("92.00")),
        ("capture", 6, Decimal("80.00")),
        ("refund", 1, Decimal("10.00")),
        ("void", 1, Decimal("12.00")),
    ]
    # the ledger itself, summed here independently
    with sessions() as session:
        sums = dict(
            session.execute(
                select(t.Payment.kind, func.sum(t.Payment.amount))
                .where(
                    t.Payment.status == "approved", t.Payment.created_at >= T, t.Payment.created_at < h(240)
                )
                .group_by(t.Payment.kind)
            ).all()
        )
    assert {x.kind.value: x.amount for x in entries.totals} == {k: Decimal(v) for k, v in sums.items()}
    # the cash book nets to the report's net revenue for the same days
    cash = sum(r.signed_amount for r in entries.rows if r.book == "cash")
    assert cash == report.revenue.totals[0].net == Decimal("70.00")


def test_journal_boundaries_are_utc_days(sessions: SessionFactory, fx: Fixture):
    # O1's capture at exactly 1999-03-02 00:00 belongs to the 2nd, not the 1st
    first = journal(sessions, Period(date(1999, 3, 1), date(1999, 3, 1)))
    second = journal(sessions, Period(date(1999, 3, 2), date(1999, 3, 2)))
    o1_capture = [(r.order_id, r.kind.value) for r in second.rows if r.order_id == fx.ids["O1"]]
    assert o1_capture == [(fx.ids["O1"], "capture")]
    assert fx.ids["O1"] not in {r.order_id for r in first.rows if r.kind.value == "capture"}
    # the 1st: five authorizations, O5's void, O7's capture; the 2nd: four captures worth 60.00
    assert [(x.kind.value, x.rows, x.amount) for x in first.totals] == [
        ("authorization", 5, Decimal("92.00")),
        ("capture", 1, Decimal("10.00")),
        ("void", 1, Decimal("12.00")),
    ]
    assert [(x.kind.value, x.rows, x.amount) for x in second.totals] == [("capture", 4, Decimal("60.00"))]


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        ("1999-02-30", None, "--since '1999-02-30' is not a date"),
        (None, "yesterday", "--until 'yesterday' is not a date"),
        ("1999-03-10", "1999-03-01", "--since 1999-03-10 is after --until 1999-03-01"),
    ],
)
def test_bad_periods_are_refused(since, until, message):
    with pytest.raises(ReportError, match=message):
        parse_period(since, until)


# ---- the command line ----


@pytest.fixture(scope="module")
def db_settings(database_url: str) -> Settings:
    """The commands need only the database (no Temporal)."""
    return Settings(database_url=database_url, delivery_sla=SLA)


async def test_report_json_and_text(db_settings: Settings, fx: Fixture):
    status, out = await cli(db_settings, "report", "--since", SINCE, "--until", UNTIL, "--json")
    assert status == 0
    data = json.loads(out)
    assert data["funnel"]["placed"] == 8 and data["funnel"]["shipped"] == 5
    assert data["revenue"]["totals"][0]["net"] == "70.00"
    assert data["fulfilment"]["fill_rate"] == {"part": 8, "whole": 9, "value": 0.8889}
    assert data["delivery"]["overdue_now"] == [fx.ids["O7"]]

    status, out = await cli(db_settings, "report", "--since", SINCE, "--until", UNTIL)
    assert status == 0
    assert "Orders placed 1999-03-01 .. 1999-03-10 (UTC): 8 (1 historical)" in out
    assert "on time: 75.0 % (3 of 4); overdue now: 1" in out
    assert "fill rate: 88.9 % (8 of 9)" in out
    assert "historical sales value (not in the ledger): 99.90 BRL in 1 olist orders" in out
    assert "feedback: 4 scores, average 3.5" in out


async def test_report_html_is_self_contained(db_settings: Settings, fx: Fixture, tmp_path: Path):
    path = tmp_path / "report.html"
    status, out = await cli(db_settings, "report", "--since", SINCE, "--until", UNTIL, "--html", str(path))
    assert status == 0 and f"wrote {path}" in out
    html = path.read_text()
    assert html.count("<svg") >= 5  # funnel, cycle times, returns, revenue, feedback
    for figure in ("70.00", "92.00", "99.90", "too small", fx.ids["O7"], "75.0 %"):
        assert figure in html
    lowered = html.lower()
    assert "<script" not in lowered and "<link" not in lowered and "<img" not in lowered
    assert "src=" not in lowered and "@import" not in lowered and "url(http" not in lowered
    # every web address in it is an SVG namespace name (never fetched), none a link to follow or load
    addresses = re.findall(r'([\w:-]+)=["\']?(?:https?:)?//', html)
    assert addresses and set(addresses) <= {"xmlns", "xmlns:xlink"}


async def test_export_journal_writes_the_ledger(db_settings: Settings, fx: Fixture, tmp_path: Path):
    path = tmp_path / "journal.csv"
    status, out = await cli(db_settings, "export", "journal", "--since", SINCE, "--until", UNTIL, str(path))
    assert status == 0, out
    assert f"wrote 13 movements (1999-03-01 .. 1999-03-10) to {path}" in out
    assert "the totals equal the payment ledger's" in out
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 13
    assert list(rows[0]) == [
        "at", "order_id", "kind", "book", "amount", "signed_amount", "net", "tax", "shipping", "discount",
        "currency", "idempotency_key", "reference",
    ]  # fmt: skip
    # orders priced before issue 26 book every cent as goods
    assert all(r["net"] == r["signed_amount"] and r["tax"] == r["shipping"] == "0.00" for r in rows)
    totals: dict[str, Decimal] = {}
    for row in rows:
        totals[row["kind"]] = totals.get(row["kind"], Decimal("0")) + Decimal(row["amount"])
    assert totals == {
        "authorization": Decimal("92.00"),
        "capture": Decimal("80.00"),
        "refund": Decimal("10.00"),
        "void": Decimal("12.00"),
    }
    assert sum(Decimal(r["signed_amount"]) for r in rows if r["book"] == "cash") == Decimal("70.00")
    assert sum(Decimal(r["signed_amount"]) for r in rows if r["book"] == "hold") == Decimal("80.00")
    assert rows[0]["at"] == "1999-03-01T00:00:00.000000+00:00" and rows[0]["kind"] == "authorization"
    assert len({r["idempotency_key"] for r in rows}) == 13


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "1999-03-32", "--until", UNTIL], "--since '1999-03-32' is not a date"),
        (["--since", UNTIL, "--until", SINCE], "--since 1999-03-10 is after --until 1999-03-01"),
    ],
)
async def test_bad_dates_write_nothing(
    db_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
):
    csv_path, html_path = tmp_path / "journal.csv", tmp_path / "report.html"
    status, out = await cli(db_settings, "export", "journal", *args, str(csv_path))
    assert status == 2 and out == "" and message in capsys.readouterr().err
    status, out = await cli(db_settings, "report", *args, "--html", str(html_path))
    assert status == 2 and out == "" and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_render_html_of_an_empty_period(sessions: SessionFactory):
    empty = build_report(sessions, Period(date(1971, 1, 1), date(1971, 1, 2)), SLA, now=NOW)
    html = render_html(empty)
    assert empty.orders == 0 and "Nothing to chart in this period." in html and "<svg" not in html


# ---- the console ----


async def test_the_console_shows_the_report_and_downloads_it(
    api: ApiServer, sessions: SessionFactory, fx: Fixture
):
    async with httpx.AsyncClient(base_url=api.url, timeout=60) as browser:
        # signed out: both pages send you to sign in
        for path in ("/console/dashboard", f"/console/reports?since={SINCE}&until={UNTIL}"):
            answer = await browser.get(path)
            assert answer.status_code == 303 and answer.headers["location"] == "/console/sign-in"
        key = create_key(sessions, unique("report-support"), Role.support).key
        assert (await sign_in(browser, key)).status_code == 303

        page = await browser.get("/console/dashboard")
        assert page.status_code == 200
        today = datetime.now(UTC).date()
        last_days = build_report(sessions, Period(today - timedelta(days=29), today), SLA)
        placed = re.search(r'id="report-placed"><span class="n">(\d+)<', page.text)
        assert placed and int(placed[1]) == last_days.funnel.placed  # the same code, the same figure
        for tile in ("report-cycle", "report-on-time", "report-fill-rate", "report-net", "report-feedback"):
            assert f'id="{tile}"' in page.text
        link = f"/console/reports?since={today - timedelta(days=29)}&amp;until={today}"
        assert link in page.text

        answer = await browser.get("/console/reports", params={"since": SINCE, "until": UNTIL})
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
        assert answer.headers["content-disposition"] == (
            'attachment; filename="oms-report-1999-03-01-1999-03-10.html"'
        )
        assert "<script" not in answer.text and answer.text.count("<svg") >= 5
        assert "70.00" in answer.text and fx.ids["O7"] in answer.text

        bad = await browser.get("/console/reports", params={"since": "1999-03-10", "until": "1999-03-01"})
        assert bad.status_code == 400 and "since 1999-03-10 is after until 1999-03-01" in bad.text


# ---- end to end ----


async def test_a_real_order_shows_up_shipped_with_its_ledger(
    client: Client, settings: Settings, sessions: SessionFactory, worker: None
):
    skus = add_products(sessions, {"E2E": 5}, price="12.50")
    today = datetime.now(UTC).date()
    period = Period(today, today)
    before = build_report(sessions, period, SLA)
    order_id = await place(client, settings, order_doc([(skus["E2E"], 2)], channel="phone"))
    await wait_status(client, order_id, "shipped")
    after = build_report(sessions, period, SLA)

    # the suite's other orders only move on meanwhile (none is placed): the placed count is exact
    assert after.funnel.placed == before.funnel.placed + 1
    assert after.funnel.shipped >= before.funnel.shipped + 1
    assert after.cycle(Stage.confirmed_to_shipped, GroupBy.channel, "phone") is not None
    phone = {m.currency: m for m in after.revenue.per_channel if m.key == "phone"}["EUR"]
    assert phone.captured >= Decimal("25.00")
    rows = [(r.kind.value, r.amount) for r in journal(sessions, period).rows if r.order_id == order_id]
    assert rows == [("authorization", Decimal("25.00")), ("capture", Decimal("25.00"))]
    with sessions() as session:
        reserved = session.scalars(
            select(t.OrderEvent.detail).where(
                t.OrderEvent.order_id == order_id, t.OrderEvent.type == "stock_reserved"
            )
        ).all()
    assert reserved == [f"{order_id}-S1 from W1"]  # the form the report reads the first allocation from


def test_a_journal_that_does_not_sum_to_the_ledger_is_not_written(
    sessions: SessionFactory, fx: Fixture, tmp_path: Path
):
    entries = journal(sessions, PERIOD)
    # as if a capture had been recorded between reading the rows and summing the ledger
    moved = [replace(x, amount=x.amount + 1) if x.kind == PaymentKind.capture else x for x in entries.ledger]
    path = tmp_path / "journal.csv"
    with pytest.raises(JournalMismatch, match="nothing was written"):
        write_csv(replace(entries, ledger=moved), path)
    assert list(tmp_path.iterdir()) == []


def test_refusals_and_cancellations_count_under_their_reason_codes(sessions: SessionFactory):
    """Issue 22: the funnel groups by `order_events.reason_code`, never by the event's text: a row
    without a code (one migration 0014 could not read) counts as such, whatever its text says."""
    at = datetime(1987, 5, 4, 9, tzinfo=UTC)
    period = Period(date(1987, 5, 4), date(1987, 5, 4))
    customer = unique("CUST")
    declined, short, old, timed_out = (unique(p) for p in ("RC-D", "RC-S", "RC-O", "RC-T"))
    rows = [
        (
            declined,
            "rejected",
            "order_rejected",
            "payment declined: do_not_honor (try tok_ok)",
            "payment_declined",
        ),
        (short, "rejected", "order_rejected", "out of stock: X short by 3", "out_of_stock"),
        (old, "rejected", "order_rejected", "out of stock: Y short by 1", None),
        (
            timed_out,
            "cancelled",
            "order_cancelled",
            "on hold for longer than 2 days, 0:00:00",
            "hold_timeout",
        ),
    ]
    with sessions.begin() as session:
        for n, (oid, status, type_, detail, code) in enumerate(rows):
            add_order_row(session, oid, customer, status=status, payment_status="pending", placed_at=at)
            session.add(
                t.OrderEvent(
                    order_id=oid,
                    seq=1,
                    at=at + timedelta(minutes=n),
                    type=type_,
                    detail=detail,
                    reason_code=code,
                )
            )
    f = build_report(sessions, period, SLA, now=NOW).funnel
    assert f.rejected_by_reason == [
        Count(NO_REASON_CODE, 1),
        Count(ReasonCode.out_of_stock, 1),
        Count(ReasonCode.payment_declined, 1),
    ]
    assert f.cancelled_by_reason == [Count(ReasonCode.hold_timeout, 1)]


def test_the_journal_and_the_revenue_split_net_tax_shipping_and_discount(sessions: SessionFactory) -> None:
    """Issue 26: an order of 40.00 goods less 3.00 discount, 8.40 tax, 5.00 shipping (total 50.40),
    captured in two parcels and one unit refunded; every row's parts add up to its signed amount."""
    with sessions.begin() as session:
        customer = unique("CUST")
        session.add(t.Customer(id=customer, name="Money Fixture", email="money@example.com"))
        r = Rows(session, customer)
        oid = unique("M")
        r.order(oid, "web", -24 * 40, "partially_returned", [("MUG", 4)], total=Decimal("50.40"))
        session.flush()
        row = session.get(t.Order, oid)
        assert row is not None
        row.subtotal, row.discounts, row.shipping = Decimal("40.00"), Decimal("3.00"), Decimal("5.00")
        row.shipping_tax, row.tax = Decimal("1.00"), Decimal("8.40")
        r.pay(oid, "authorization", "50.40", -24 * 40)
        r.pay(oid, "capture", "24.51", -24 * 40 + 1)
        r.pay(oid, "capture", "25.89", -24 * 40 + 2)
        r.pay(oid, "refund", "10.80", -24 * 40 + 3)
    entries = journal(sessions, Period(date(1999, 1, 20), date(1999, 1, 21)))
    mine = [x for x in entries.rows if x.order_id == oid]
    split = [(x.kind.value, x.split.net, x.split.tax, x.split.shipping, x.split.discount) for x in mine]
    # goods 37.00, tax 8.40, shipping 5.00 (its 1.00 tax is in the tax): tax and shipping round
    # towards zero, the goods take the remainder
    assert split == [
        ("authorization", Decimal("37.00"), Decimal("8.40"), Decimal("5.00"), Decimal("3.00")),
        ("capture", Decimal("18.00"), Decimal("4.08"), Decimal("2.43"), Decimal("1.45")),
        ("capture", Decimal("19.02"), Decimal("4.31"), Decimal("2.56"), Decimal("1.54")),
        ("refund", Decimal("-7.93"), Decimal("-1.80"), Decimal("-1.07"), Decimal("-0.64")),
    ]
    for x in mine:
        assert x.split.net + x.split.tax + x.split.shipping == x.signed_amount
    cash = [x for x in mine if x.book == "cash"]
    ledger = [(x.at, x.kind.value, "approved", x.currency, x.amount, "web", x.parts) for x in cash]
    money = revenue(ledger, []).totals[0]
    assert money.net == Decimal("39.60")
    assert (money.goods, money.tax, money.shipping, money.discounts) == (
        Decimal("29.09"),
        Decimal("6.59"),
        Decimal("3.92"),
        Decimal("2.35"),
    )
    assert money.goods + money.tax + money.shipping == money.net
