"""Property (issue 26): any sequence of support's changes to an order — partial cancels before and after
the pick, warehouse progress, deliveries, returns (support's and the customer's, received good or
damaged, refunded), goodwill refunds (some above what is refundable) — conserves money to the cent and
stock to the unit, and every change the order refuses moves nothing.

The real stack: the suite's dev server, the real worker (its warehouse and carrier manual: the test is
the warehouse, through services/fulfilment.py, and the carrier, through `confirm_delivery`), the real
database and the sandbox payment gateway. Changes go through the client layer (services/orders.py), as
the CLI and the API send them. tests/support_model.py says what each change must do. An example is two
sequences: changes while the parcels are on their way, then (every parcel driven to delivery, the
authorization's rest voided) changes within the return window. At the end the orders, payments and
stock rows are checked against the model.

Trade-offs: one order per example, placed with no release delay (its shipments go to the warehouse at
once, so a cancel in the release window is left to tests/test_cancel.py), its SKUs stocked in two
warehouses so that it ships in one or two parcels, one change at a time (concurrent changes are
tests/test_goodwill.py's and tests/test_cancel.py's). An example costs 1-6 s on the real stack, so the
run is 10 drawn examples (2-8 changes on the way, 2-5 after) and 3 explicit ones for the paths the
draws may miss: ~40 s on two cores shared at load 12, SQLite or PostgreSQL, plus the suite's setup.
The draws are derandomized (the same sequences every run: a failure reproduces as it is) and not
shrunk unless asked (PHASES below).

A new kind of change (issue 26's line edits) is a frozen dataclass with an `apply(run)` (and the
model's rule for it in tests/support_model.py) and one `Kind` in OPERATIONS.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Any, Protocol

import pytest
from hypothesis import HealthCheck, Phase, event, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from temporalio.client import Client

from config import Settings
from db import SessionFactory
from domain.stock import check_stock
from models import tables as t
from models.choices import GoodwillReason, ReturnCondition, ReturnReason
from models.fulfilment import WarehouseStep
from models.order_money import LineMoney, OrderMoney
from models.orders import (
    CancelLine,
    CustomerReturnIn,
    CustomerReturnLine,
    GoodwillIn,
    OrderView,
    ReturnIn,
    ReturnReceipt,
    ReturnView,
    ShipmentLine,
)
from services.fulfilment import submit_warehouse_report
from services.orders import (
    Refused,
    cancel_order,
    confirm_delivery,
    customer_return,
    decide_return,
    goodwill_refund,
    order_view,
    receive_return,
    request_return,
)
from tests.helpers import (
    add_products,
    add_warehouse,
    assert_ledger_invariants,
    events,
    eventually,
    ledger,
    order_doc,
    place,
    stock_movements,
    stock_of,
)
from tests.support_model import CANCELLABLE_UNITS, OrderModel, Parcel, Stage
from tests.test_parties import manual_worker, report

CENT = Decimal("0.01")
OPEN_WINDOW = timedelta(minutes=10)  # the return window stays open for the whole sequence


# ---- the order: 2-3 SKUs with tax, a discount and shipping, stocked in one of two warehouses ----


@dataclass(frozen=True)
class LineSpec:
    quantity: int
    price_cents: int
    discount_cents: int  # off the line, at most its price
    warehouse: int  # 0 or 1: which of the two warehouses stocks it
    spare: int  # units on the shelf beyond the order's


@dataclass(frozen=True)
class OrderSpec:
    lines: tuple[LineSpec, ...]
    shipping_cents: int
    taxes_included: bool


line_specs = st.integers(min_value=1, max_value=3).flatmap(
    lambda qty: st.builds(
        LineSpec,
        quantity=st.just(qty),
        price_cents=st.integers(min_value=99, max_value=4999),
        discount_cents=st.integers(min_value=0, max_value=99 * qty),
        warehouse=st.integers(min_value=0, max_value=1),
        spare=st.integers(min_value=0, max_value=2),
    )
)
order_specs = st.builds(
    OrderSpec,
    lines=st.lists(line_specs, min_size=2, max_size=3).map(tuple),
    shipping_cents=st.integers(min_value=0, max_value=999),
    taxes_included=st.booleans(),
)


def cents(n: int) -> Decimal:
    return Decimal(n).scaleb(-2)


def vat(amount: Decimal) -> Decimal:
    """20 % VAT of an amount, to the cent (the shop's figure: the system takes it as given)."""
    return (amount * Decimal("0.2")).quantize(CENT, rounding=ROUND_HALF_EVEN)


def money_doc(spec: OrderSpec, skus: list[str]) -> tuple[dict[str, Any], OrderMoney]:
    """The order document (shipping, tax and discount lines) and its money as the model reads it."""
    lines, money_lines = [], []
    for line, sku in zip(spec.lines, skus, strict=True):
        price, discount = cents(line.price_cents), cents(line.discount_cents)
        gross = price * line.quantity
        tax = vat(gross - discount)
        lines.append(
            {
                "sku": sku,
                "quantity": line.quantity,
                "unit_price": str(price),
                "tax_lines": [{"title": "VAT", "rate": "0.2", "price": str(tax)}],
                "discount_allocations": [{"amount": str(discount)}] if discount else [],
            }
        )
        money_lines.append(
            LineMoney(sku=sku, quantity=line.quantity, gross=gross, discount=discount, tax=tax)
        )
    shipping = cents(spec.shipping_cents)
    money = OrderMoney(
        lines=tuple(money_lines),
        shipping=shipping,
        shipping_tax=vat(shipping),
        taxes_included=spec.taxes_included,
    )
    doc = order_doc([])
    doc.update(
        lines=lines,
        shipping_lines=[
            {
                "title": "Standard",
                "price": str(shipping),
                "tax_lines": [{"title": "VAT", "rate": "0.2", "price": str(vat(shipping))}],
            }
        ],
        discount_codes=[{"code": "SEQ", "amount": str(money.discounts)}] if money.discounts else [],
        taxes_included=spec.taxes_included,
        total_price=str(money.total),
    )
    return doc, money


# ---- one example's world: the order on the real stack, and the model beside it ----


@dataclass
class Run:
    client: Client
    sessions: SessionFactory
    order_id: str
    model: OrderModel
    skus: list[str]
    warehouse_of: dict[str, str]
    shelf: dict[str, tuple[int, int]]  # (on hand, reserved) per SKU once the order was reserved
    customer_requests: dict[tuple[str, int, str], str] = field(default_factory=dict)  # content -> RMA

    def sku(self, index: int) -> str:
        return self.skus[index % len(self.skus)]

    def snapshot(self) -> tuple[object, ...]:
        """What a refused change must leave as it was: the order's payments, its SKUs' stock levels,
        its stock movements and its event rows."""
        levels = {sku: stock_of(self.sessions, sku, self.warehouse_of[sku]) for sku in self.skus}
        moves = len(stock_movements(self.sessions, self.order_id))
        return ledger(self.sessions, self.order_id), levels, moves, len(events(self.sessions, self.order_id))

    async def view(self) -> OrderView:
        return await order_view(self.client, self.order_id)

    async def until(self, check: Any, what: str) -> OrderView:
        return await eventually(self.view, check, what=what)

    async def quiet(self) -> None:
        """Until the database has every event the order recorded (the payments and stock rows are
        written by the steps before their events): a refusal's snapshot then sees nothing late."""

        async def probe() -> tuple[int, int]:
            view = await self.view()
            return len(view.events), len(events(self.sessions, self.order_id))

        await eventually(probe, lambda counts: counts[0] == counts[1], what="the event rows written")
        assert_ledger_invariants(self.sessions, self.order_id)

    async def refused(self, attempt: Awaitable[object], what: str) -> None:
        """The order must refuse the change, and nothing may move."""
        event(f"{what}: refused")
        before = self.snapshot()
        with pytest.raises(Refused):
            await attempt
        assert self.snapshot() == before, "a refused change moved something"

    async def check_parcels(self) -> None:
        """The order's shipments as the model has them: units and the amount each captures."""
        view = await self.view()
        shown = {s.id: s for s in view.shipments}
        for p in self.model.parcels:
            s = shown[p.id]
            units = Counter({x.sku: x.quantity for x in s.lines})
            assert (+units, s.amount) == (+p.units, p.amount), f"{p.id}: {s.lines} {s.amount}"


# ---- support's changes: one dataclass each, applied to the order and to the model ----


class Operation(Protocol):
    async def apply(self, run: Run) -> None: ...


@dataclass(frozen=True)
class Advance:
    """The warehouse and the carrier move the parcel holding a SKU (or, when none is on its way, the
    first one that is) `steps` steps on: picked, packed, handed over (the capture), delivered (the last
    parcel: the authorization's rest voided, the return window open)."""

    sku: int
    steps: int = 1

    async def apply(self, run: Run) -> None:
        for _ in range(self.steps):
            moving = run.model.moving()
            if not moving:
                return
            sku = run.sku(self.sku)
            await self._step(run, next((p for p in moving if p.units[sku] > 0), moving[0]))
            await run.quiet()

    async def _step(self, run: Run, p: Parcel) -> None:
        if p.stage == Stage.released:
            await submit_warehouse_report(run.client, report(p.id, WarehouseStep.picked))
            p.stage = Stage.picked
        elif p.stage == Stage.picked:
            await submit_warehouse_report(run.client, report(p.id, WarehouseStep.packed, parcels_g=[500]))
            p.stage = Stage.packed
        elif p.stage == Stage.packed:
            await submit_warehouse_report(run.client, report(p.id, WarehouseStep.handed_over))
            run.model.hand_over(p)
            await run.until(lambda v: v.payment.captured == run.model.captured, f"{p.id}'s capture")
        else:
            await confirm_delivery(run.client, run.order_id, p.id)
            p.stage = Stage.delivered
            await run.until(lambda v: _shipment(v, p.id).status == "delivered", f"{p.id} delivered")
            if run.model.fulfilled():
                await run.until(lambda v: v.return_window_ends is not None, "the return window")


@dataclass(frozen=True)
class CancelUnits:
    """Support cancels so many units of one or two SKUs (refused once they are packed or gone)."""

    lines: tuple[tuple[int, int], ...]  # (SKU index, units)

    def wanted(self, run: Run) -> dict[str, int]:
        return {run.sku(i): qty for i, qty in self.lines}  # a SKU named twice: the last one counts

    async def apply(self, run: Run) -> None:
        wanted = self.wanted(run)
        plan = run.model.cancel_plan(wanted)
        attempt = cancel_order(
            run.client,
            run.order_id,
            "the customer called",
            by="support-seq",
            lines=[CancelLine(sku=sku, quantity=qty) for sku, qty in wanted.items()],
        )
        if plan is None:
            await run.refused(attempt, "cancel")
            return
        view = await attempt
        stages = sorted({p.stage.name for p in run.model.parcels if p.stage in CANCELLABLE_UNITS})
        event(f"cancel: {plan} ({', '.join(stages)})")
        run.model.cancel(wanted)
        assert (view.status == "cancelled") == (plan == "whole"), (plan, view.status)
        if plan == "whole":
            await run.until(lambda v: v.payment_status == "voided", "the whole cancel's void")
        await run.quiet()
        await run.check_parcels()


@dataclass(frozen=True)
class CancelRest(CancelUnits):
    """Support cancels every unit that can still be cancelled: the whole order while nothing is packed,
    else the parcels not yet packed (one unit of the first SKU when there is none: refused)."""

    lines: tuple[tuple[int, int], ...] = ()

    def wanted(self, run: Run) -> dict[str, int]:
        return dict(+run.model.cancellable()) or {run.sku(0): 1}


@dataclass(frozen=True)
class ReturnUnits:
    """Delivered units come back (support's RMA, or the customer's request approved), are received good
    (restocked) or damaged (written off), and refunded."""

    sku: int
    quantity: int
    condition: ReturnCondition
    by_customer: bool
    reason: ReturnReason

    async def apply(self, run: Run) -> None:
        sku, model = run.sku(self.sku), run.model
        content = (sku, self.quantity, self.reason.value)
        if self.by_customer and content in run.customer_requests:  # asked again: the first answer
            before = run.snapshot()
            again = await self._ask(run, sku)
            assert again.rma == run.customer_requests[content] and run.snapshot() == before
            return
        if not model.can_return(sku, self.quantity):
            await run.refused(self._ask(run, sku), "return")
            return
        ret = await self._ask(run, sku)
        if self.by_customer:
            run.customer_requests[content] = ret.rma
            ret = await decide_return(run.client, run.order_id, ret.rma, approve=True, by="support-seq")
        await receive_return(
            run.client, run.order_id, ReturnReceipt(rma=ret.rma, condition=self.condition, by="wh-seq")
        )
        refund = model.return_units(sku, self.quantity, good=self.condition == ReturnCondition.good)
        event("return: " + ("customer's" if self.by_customer else "support's"))
        view = await run.until(
            lambda v: _return(v, ret.rma).status == "refunded", f"{ret.rma} received and refunded"
        )
        assert _return(view, ret.rma).refund_amount == refund, (ret.rma, refund)
        await run.quiet()

    def _ask(self, run: Run, sku: str) -> Awaitable[ReturnView]:
        if self.by_customer:
            wanted = [CustomerReturnLine(sku=sku, quantity=self.quantity)]
            return customer_return(
                run.client, run.order_id, CustomerReturnIn(lines=wanted, reason=self.reason)
            )
        request = ReturnIn(sku=sku, quantity=self.quantity, reason=self.reason.value)
        return request_return(run.client, run.order_id, request, by="support-seq")


@dataclass(frozen=True)
class Goodwill:
    """Support refunds a share of what is refundable, or `over` cents more than it (refused)."""

    permille: int
    over: int

    async def apply(self, run: Run) -> None:
        room = run.model.refundable
        share = (room * self.permille / 1000).quantize(CENT, rounding=ROUND_DOWN)
        amount = room + cents(self.over) if self.over else max(share, CENT)
        attempt = goodwill_refund(
            run.client, run.order_id, GoodwillIn(amount=amount, reason=GoodwillReason.service_issue)
        )
        if not run.model.can_goodwill(amount):
            await run.refused(attempt, "goodwill")
            return
        refund = await attempt
        assert refund.amount == amount
        run.model.goodwill += amount
        event("goodwill")
        await run.quiet()


@dataclass(frozen=True)
class Kind:
    """A kind of change: how to draw one, and how often it comes while the parcels are on their way
    and once they are all delivered (0: never then)."""

    strategy: st.SearchStrategy[Any]
    during: int
    after: int


SKU = st.integers(0, 2)  # an index into the order's SKUs (modulo their number)
UNITS = st.sampled_from([1, 1, 2, 3])  # one unit most often: more of them are taken
OPERATIONS = [
    Kind(st.builds(Advance, sku=SKU, steps=st.sampled_from([1, 1, 2, 3])), during=8, after=0),
    Kind(
        st.builds(
            CancelUnits, lines=st.lists(st.tuples(SKU, st.integers(1, 3)), min_size=1, max_size=2).map(tuple)
        ),
        during=6,
        after=1,
    ),
    Kind(st.just(CancelRest()), during=1, after=0),  # mostly a whole cancel: the rest is refused
    Kind(
        st.builds(
            ReturnUnits,
            sku=SKU,
            quantity=UNITS,
            condition=st.sampled_from(ReturnCondition),
            by_customer=st.booleans(),
            reason=st.sampled_from(ReturnReason),
        ),
        during=1,
        after=6,
    ),
    Kind(
        st.builds(Goodwill, permille=st.integers(1, 1000), over=st.sampled_from([0, 0, 0, 1, 2500])),
        during=2,
        after=3,
    ),
]


def changes(phase: str, least: int, most: int) -> st.SearchStrategy[list[Operation]]:
    """A sequence of changes of the phase's kinds, each as often as its weight says."""
    # sampled_from, not one_of: one_of draws each distinct strategy alike, however often it is named
    weighted = [k.strategy for k in OPERATIONS for _ in range(getattr(k, phase))]
    return st.lists(
        st.sampled_from(weighted).flatmap(lambda strategy: strategy), min_size=least, max_size=most
    )


def _shipment(view: OrderView, shipment_id: str) -> Any:
    return next(s for s in view.shipments if s.id == shipment_id)


def _return(view: OrderView, rma: str) -> ReturnView:
    return next(r for r in view.returns if r.rma == rma)


# ---- one example: place, apply the sequence, drive the order to its end, check the rows ----


async def start(client: Client, sessions: SessionFactory, settings: Settings, spec: OrderSpec) -> Run:
    warehouses = [add_warehouse(sessions, prefix="SQ") for _ in range(2)]
    skus, warehouse_of = [], {}
    for n, line in enumerate(spec.lines):
        wh = warehouses[line.warehouse]
        (sku,) = add_products(
            sessions, {f"SQ{n}": line.quantity + line.spare}, price=str(cents(line.price_cents)), warehouse=wh
        ).values()
        skus.append(sku)
        warehouse_of[sku] = wh
    doc, money = money_doc(spec, skus)
    order_id = await place(client, settings, doc, return_window=OPEN_WINDOW)
    view = await eventually(
        lambda: order_view(client, order_id),
        lambda v: bool(v.shipments) and all(s.status == "released" for s in v.shipments),
        what="every shipment released to its warehouse",
    )
    parcels = [
        (s.id, [ShipmentLine(sku=x.sku, quantity=x.quantity) for x in s.lines]) for s in view.shipments
    ]
    shelf = {sku: stock_of(sessions, sku, warehouse_of[sku]) for sku in skus}
    run = Run(client, sessions, order_id, OrderModel.of(money, parcels), skus, warehouse_of, shelf)
    await run.check_parcels()
    event(f"parcels: {len(parcels)}")
    return run


async def finish(run: Run) -> None:
    """Every parcel still on its way is picked, packed, handed over and delivered."""
    while run.model.moving():
        await Advance(0).apply(run)


def assert_conserved(run: Run) -> None:
    """From the rows: the payments ledger against the model's money, and the stock against the units
    that left the shelf."""
    model = run.model
    money = ledger(run.sessions, run.order_id)
    totals = assert_ledger_invariants(run.sessions, run.order_id)
    assert totals.authorized >= totals.captured >= totals.refunded
    expected = {
        "authorization": model.money.total,
        "capture": model.captured,
        "refund": model.return_refunds,
        "goodwill_refund": model.goodwill,
        "void": model.voided,
    }
    assert {k: money.get(k, Decimal(0)) for k in expected} == expected, money
    assert totals.captured - totals.refunded == model.kept_value() - model.goodwill
    assert set(money) <= set(expected), money

    with run.sessions() as session:
        row = session.get(t.Order, run.order_id)
        assert row is not None and row.status == model.status(), (row and row.status, model.status())

    gone, ordered = model.left_the_shelf(), Counter({x.sku: x.quantity for x in model.money.lines})
    for sku in run.skus:
        on_hand, reserved = run.shelf[sku]
        # once reserved, the shelf held on_hand units, the order's among those reserved
        assert stock_of(run.sessions, sku, run.warehouse_of[sku]) == (
            on_hand - gone[sku],
            reserved - ordered[sku],
        ), sku
    assert [p for p in check_stock(run.sessions) if any(sku in p for sku in run.skus)] == []


# Shrinking replays sequences on the real stack for many minutes (past the suite's 300 s timeout): a
# failure shows the drawn sequence, and OMS_SHRINK=1 (with `-p no:timeout`) shrinks it.
PHASES = list(Phase) if os.environ.get("OMS_SHRINK") else [Phase.explicit, Phase.generate]


@pytest.fixture
async def manual_settings(gated_worker: Any) -> Settings:
    """A worker whose warehouse and carrier are manual, shared by every example of the test (hypothesis
    runs a function-scoped fixture once per test): a worker takes a second to start."""
    return await manual_worker(gated_worker)


@pytest.mark.usefixtures("worker")
@hypothesis_settings(
    max_examples=10,
    deadline=None,
    database=None,  # no .hypothesis directory in the tree
    derandomize=True,  # the same sequences every run: a failure reproduces as it is
    phases=PHASES,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=order_specs, during=changes("during", 2, 8), after=changes("after", 2, 5))
# The paths the draws may miss, every run: the docs' 50.40 order in two parcels, a mug cancelled after
# its pick, goodwill after the lamp's capture and then of all that is left (the next return's refund is
# capped at nothing), refusals of each kind; and a whole cancel after a pick, prices with tax included.
@example(
    spec=OrderSpec((LineSpec(3, 1000, 300, 0, 1), LineSpec(1, 1000, 0, 1, 0)), 500, False),
    during=[
        Advance(0),
        CancelUnits(((0, 1),)),
        Advance(1, 3),
        Goodwill(500, 0),
        CancelUnits(((1, 1),)),
        Goodwill(0, 2500),
    ],
    after=[
        ReturnUnits(0, 1, ReturnCondition.good, False, ReturnReason.other),
        Goodwill(1000, 0),
        ReturnUnits(0, 1, ReturnCondition.damaged, True, ReturnReason.damaged),
        ReturnUnits(0, 1, ReturnCondition.good, True, ReturnReason.damaged),
        Goodwill(1, 1),
        ReturnUnits(1, 2, ReturnCondition.good, False, ReturnReason.other),
    ],
)
# The draw that found `partially_returned` for an order whose every delivered unit came back (A cancelled,
# both B returned): workflows/returns.py counted the lines as ordered.
@example(
    spec=OrderSpec((LineSpec(1, 668, 26, 0, 1), LineSpec(2, 2560, 40, 1, 2)), 484, True),
    during=[CancelUnits(((0, 1),))],
    after=[ReturnUnits(1, 2, ReturnCondition.good, False, ReturnReason.other)],
)
@example(
    spec=OrderSpec(
        (LineSpec(2, 1999, 150, 0, 0), LineSpec(3, 333, 0, 0, 2), LineSpec(1, 4999, 99, 0, 1)), 499, True
    ),
    during=[CancelUnits(((0, 1), (1, 2))), Advance(0), CancelRest(), Goodwill(500, 0)],
    after=[ReturnUnits(0, 1, ReturnCondition.good, False, ReturnReason.other), Goodwill(500, 0)],
)
async def test_support_changes_conserve_money_and_stock(
    client: Client,
    sessions: SessionFactory,
    manual_settings: Settings,
    spec: OrderSpec,
    during: list[Operation],
    after: list[Operation],
) -> None:
    run = await start(client, sessions, manual_settings, spec)
    for operation in during:  # while the parcels are on their way
        await operation.apply(run)
    await finish(run)  # every parcel left delivered: the rest of the authorization voided
    for operation in after:  # within the return window
        await operation.apply(run)
    assert_conserved(run)
