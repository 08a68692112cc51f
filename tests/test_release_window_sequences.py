"""Property (issue 26): any sequence of support's changes to an order in its release window — line edits
(a quantity changed, a line removed, a SKU added), partial cancellations, goodwill refunds (refused:
nothing is captured yet) — keeps the hold on the card equal to what the order's shipments will charge,
to the cent, and the reservations equal to the order's units, to the unit; a refused change moves
nothing; the whole cancellation at the end releases every unit and the whole hold, increments included.

The real stack (the suite's worker, database and sandbox gateway), the order placed with a release
window of an hour, so that it stays in it. tests/test_support_sequences.py covers the changes after
release; this one covers the window, where only edits live. The expected figures come from the rule as
docs/orders.md states it (a placed line's discount and tax scale with its quantity, half-even; a new SKU
at the catalog price with the order's 20 % VAT), computed here, and from the share rules of
models/order_money.py; the units each warehouse reserves are the system's choice, read from the order.
15 drawn examples (derandomized) and one explicit: about 30 s on two cores.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from temporalio.client import Client

from config import Settings
from db import SessionFactory
from domain.stock import check_stock
from models.choices import GoodwillReason
from models.order_money import LineMoney, OrderMoney
from models.orders import CancelLine, EditIn, GoodwillIn, OrderView, ShipmentLine
from services.orders import Refused, cancel_order, edit_order, goodwill_refund, order_view
from tests.helpers import (
    add_products,
    add_warehouse,
    assert_ledger_invariants,
    eventually,
    ledger,
    place,
    stock_of,
)
from tests.support_model import OrderModel, Stage
from tests.test_support_sequences import LineSpec, OrderSpec, cents, money_doc, order_specs

CENT = Decimal("0.01")
NEW_PRICE = Decimal("7.77")  # the SKU an edit may add, never on the order as placed
NEW_STOCK = 3


def _round(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_EVEN) + 0


@dataclass
class Window:
    """One example: the order, its SKUs (the placed ones, then the new one) and the expected state."""

    client: Client
    sessions: SessionFactory
    order_id: str
    placed: OrderMoney  # as placed: each line's basis
    prices: dict[str, Decimal]
    skus: list[str]
    warehouse_of: dict[str, str]
    on_hand: dict[str, int]
    units: Counter[str]  # the order's units now
    model: OrderModel  # its money now and its shipments' amounts
    ended: bool = False

    def money_for(self, units: Counter[str]) -> OrderMoney:
        """The order's money with these units, by the documented rule (not the system's code)."""
        lines = []
        basis = {x.sku: x for x in self.placed.lines}
        for sku in self.skus:
            q = units[sku]
            if q <= 0:
                continue
            gross = self.prices[sku] * q
            if sku in basis:
                b = basis[sku]
                discount, tax = _round(b.discount * q / b.quantity), _round(b.tax * q / b.quantity)
            else:
                net = gross
                tax = _round(net * Decimal("0.2") / (Decimal("1.2") if self.placed.taxes_included else 1))
                discount = Decimal(0)
            lines.append(LineMoney(sku=sku, quantity=q, gross=gross, discount=discount, tax=tax))
        return self.placed.with_lines(lines)

    async def view(self) -> OrderView:
        return await order_view(self.client, self.order_id)

    def snapshot(self) -> tuple[object, ...]:
        levels = {sku: stock_of(self.sessions, sku, self.warehouse_of[sku]) for sku in self.skus}
        return ledger(self.sessions, self.order_id), levels

    async def refused(self, attempt: Any) -> None:
        before = self.snapshot()
        with pytest.raises(Refused):
            await attempt
        assert self.snapshot() == before, "a refused change moved something"

    async def rebuild(self) -> None:
        """After an edit: the shipments as the system allocated them, each charging its share of the
        expected money."""
        view = await self.view()
        live = [s for s in view.shipments if s.status != "cancelled"]
        self.model = OrderModel.of(
            self.money_for(self.units),
            [(s.id, [ShipmentLine(sku=x.sku, quantity=x.quantity) for x in s.lines]) for s in live],
        )

    async def check(self) -> None:
        """The rows and the order against the expected state."""
        money = ledger(self.sessions, self.order_id)
        totals = assert_ledger_invariants(self.sessions, self.order_id)
        assert totals.captured == 0
        held = totals.authorized - totals.voided
        live = [p for p in self.model.parcels if p.stage != Stage.cancelled]
        if self.ended:
            assert held == 0 and totals.voided == totals.authorized, money
        else:
            assert held == sum((p.amount for p in live), Decimal(0)), (money, [p.amount for p in live])
            view = await self.view()
            shown = {s.id: s for s in view.shipments if s.status != "cancelled"}
            assert set(shown) == {p.id for p in live}
            for p in live:
                s = shown[p.id]
                assert (Counter({x.sku: x.quantity for x in s.lines}), s.amount) == (+p.units, p.amount)
            assert Counter(view.units()) == +self.units
        for sku in self.skus:
            reserved = 0 if self.ended else self.units[sku]
            assert stock_of(self.sessions, sku, self.warehouse_of[sku]) == (self.on_hand[sku], reserved), sku


@dataclass(frozen=True)
class EditLines:
    """Support sets some lines' quantities (0 removes one; the index past the placed SKUs is the new SKU)."""

    lines: tuple[tuple[int, int], ...]

    async def apply(self, w: Window) -> None:
        wanted = {w.skus[i % len(w.skus)]: q for i, q in self.lines}
        attempt = edit_order(
            w.client,
            w.order_id,
            EditIn.model_validate({"lines": [{"sku": s, "quantity": q} for s, q in wanted.items()]}),
            by="support-seq",
        )
        after = +Counter({**w.units, **wanted})  # the named lines as they should be, the others as they are
        if w.ended or not after or any(after[s] > w.on_hand[s] for s in after):
            await w.refused(attempt)
            return
        if after == +w.units:  # the lines already are so: nothing to do, nothing moves
            before = w.snapshot()
            await attempt
            assert w.snapshot() == before
            return
        view = await attempt
        w.units = after
        await w.rebuild()
        assert view.total == w.model.money.total, (view.lines, w.model.money.lines)


@dataclass(frozen=True)
class CancelUnits:
    lines: tuple[tuple[int, int], ...]

    async def apply(self, w: Window) -> None:
        wanted = {w.skus[i % len(w.skus)]: q for i, q in self.lines}
        attempt = cancel_order(
            w.client,
            w.order_id,
            "the customer called",
            by="support-seq",
            lines=[CancelLine(sku=s, quantity=q) for s, q in wanted.items()],
        )
        if w.ended or any(q > w.units[s] for s, q in wanted.items()):
            await w.refused(attempt)
            return
        view = await attempt
        if Counter(wanted) == +w.units:
            assert view.status == "cancelled"
            w.ended = True
            return
        w.model.cancel(wanted)
        w.units -= Counter(wanted)


@dataclass(frozen=True)
class Goodwill:
    async def apply(self, w: Window) -> None:
        request = GoodwillIn(amount=Decimal("1.00"), reason=GoodwillReason.service_issue)
        await w.refused(goodwill_refund(w.client, w.order_id, request))  # nothing captured yet


SKU = st.integers(0, 3)  # placed SKUs by index; one past them is the new SKU (modulo their number)
OPERATIONS = st.one_of(
    st.builds(
        EditLines,
        lines=st.lists(
            st.tuples(SKU, st.integers(0, 5)), min_size=1, max_size=3, unique_by=lambda x: x[0]
        ).map(tuple),
    ),
    st.builds(
        CancelUnits,
        lines=st.lists(
            st.tuples(SKU, st.integers(1, 2)), min_size=1, max_size=2, unique_by=lambda x: x[0]
        ).map(tuple),
    ),
    st.just(Goodwill()),
)


async def start(client: Client, sessions: SessionFactory, settings: Settings, spec: OrderSpec) -> Window:
    warehouses = [add_warehouse(sessions, prefix="RW") for _ in range(2)]
    skus, warehouse_of, prices = [], {}, {}
    for n, line in enumerate(spec.lines):
        wh = warehouses[line.warehouse]
        (sku,) = add_products(
            sessions, {f"RW{n}": line.quantity + line.spare}, price=str(cents(line.price_cents)), warehouse=wh
        ).values()
        skus.append(sku)
        warehouse_of[sku], prices[sku] = wh, cents(line.price_cents)
    (new,) = add_products(
        sessions, {"RWNEW": NEW_STOCK}, price=str(NEW_PRICE), warehouse=warehouses[0]
    ).values()
    doc, money = money_doc(spec, skus)
    order_id = await place(client, settings, doc, release_delay=timedelta(hours=1))
    await eventually(
        lambda: order_view(client, order_id), lambda v: v.status == "confirmed", what="confirmed"
    )
    units = Counter({x.sku: x.quantity for x in money.lines})
    warehouse_of[new], prices[new] = warehouses[0], NEW_PRICE
    on_hand = {sku: stock_of(sessions, sku, warehouse_of[sku])[0] for sku in [*skus, new]}
    w = Window(
        client,
        sessions,
        order_id,
        money,
        prices,
        [*skus, new],
        warehouse_of,
        on_hand,
        units,
        OrderModel.of(money, []),
    )
    await w.rebuild()
    await w.check()
    return w


@pytest.mark.usefixtures("worker")
@hypothesis_settings(
    max_examples=15,
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],  # shrinking replays on the real stack for minutes
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=order_specs, changes=st.lists(OPERATIONS, min_size=2, max_size=6))
@example(  # up and down and back, a cancel between, the new SKU added then removed, a refusal
    spec=OrderSpec((LineSpec(3, 1000, 300, 0, 1), LineSpec(1, 1000, 0, 1, 0)), 500, False),
    changes=[
        EditLines(((0, 4), (2, 2))),
        CancelUnits(((0, 1),)),
        EditLines(((2, 0), (1, 0))),
        EditLines(((2, 9),)),
        Goodwill(),
        EditLines(((0, 3), (1, 1))),
    ],
)
async def test_release_window_changes_keep_the_hold_and_the_reservations_exact(
    client: Client, sessions: SessionFactory, settings: Settings, spec: OrderSpec, changes: list[Any]
) -> None:
    w = await start(client, sessions, settings, spec)
    for change in changes:
        await change.apply(w)
        await w.check()
    if not w.ended:
        await cancel_order(w.client, w.order_id, "the end of the example", by="support-seq")
        w.ended = True
        await eventually(w.view, lambda v: v.payment_status == "voided", what="the whole hold voided")
    await w.check()
    assert [p for p in check_stock(sessions) if any(sku in p for sku in w.skus)] == []
