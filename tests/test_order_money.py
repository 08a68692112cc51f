"""The order's money (models/order_money.py) and its check at the door (models/orders.py): to the cent."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.edited_lines import edited_lines
from models.order_money import (
    LineMoney,
    OrderMoney,
    refund_of,
    replacement_charge,
    shipment_amounts,
    split,
    tax_at,
)
from models.orders import LineIn, PricedLine
from services.orders import OrderInputError, parse_order

D = Decimal


@dataclass(frozen=True)
class U:
    sku: str
    quantity: int


cents = st.integers(min_value=0, max_value=10_000_000).map(lambda n: D(n).scaleb(-2))


@given(total=cents, weights=st.lists(cents, min_size=1, max_size=12))
def test_split_adds_up_exactly_and_never_goes_negative(total: Decimal, weights: list[Decimal]) -> None:
    shares = split(total, weights)
    assert sum(shares, D(0)) == total
    assert all(s >= 0 and s == s.quantize(D("0.01")) for s in shares)


@st.composite
def orders_and_splits(draw: st.DrawFn) -> tuple[OrderMoney, list[list[U]]]:
    n = draw(st.integers(min_value=1, max_value=5))
    lines = []
    for i in range(n):
        quantity = draw(st.integers(min_value=1, max_value=9))
        gross = draw(cents)
        discount = draw(st.integers(min_value=0, max_value=int(gross * 100)).map(lambda c: D(c).scaleb(-2)))
        lines.append(
            LineMoney(sku=f"S{i}", quantity=quantity, gross=gross, discount=discount, tax=draw(cents))
        )
    money = OrderMoney(
        lines=tuple(lines), shipping=draw(cents), shipping_tax=draw(cents), taxes_included=draw(st.booleans())
    )
    parcels = draw(st.integers(min_value=1, max_value=4))
    shipments: list[list[U]] = [[] for _ in range(parcels)]
    for line in lines:  # every unit goes to some shipment
        for _ in range(line.quantity):
            shipments[draw(st.integers(min_value=0, max_value=parcels - 1))].append(U(line.sku, 1))
    return money, shipments


@given(orders_and_splits())
def test_shipments_capture_the_total_to_the_cent_for_any_split(
    case: tuple[OrderMoney, list[list[U]]],
) -> None:
    money, shipments = case
    amounts = shipment_amounts(money, shipments)
    assert sum(amounts, D(0)) == money.total
    assert all(a >= 0 for a in amounts)


@given(orders_and_splits(), st.data())
def test_returning_every_unit_refunds_each_line_charge_exactly(
    case: tuple[OrderMoney, list[list[U]]], data: st.DataObject
) -> None:
    money, _ = case
    for line in money.lines:
        done, refunded = 0, D(0)
        while done < line.quantity:
            take = data.draw(st.integers(min_value=1, max_value=line.quantity - done))
            refunded += refund_of(money, line.sku, take, done)
            done += take
        assert refunded == money.line_charge(line)  # its discounted price and its tax, not the shipping


def test_the_rule_on_an_example() -> None:
    money = OrderMoney(
        lines=(
            LineMoney("A", 3, gross=D("30.00"), discount=D("3.00"), tax=D("5.40")),
            LineMoney("B", 1, gross=D("10.00"), tax=D("2.00")),
        ),
        shipping=D("5.00"),
        shipping_tax=D("1.00"),
    )
    assert (money.subtotal, money.discounts, money.tax) == (D("40.00"), D("3.00"), D("8.40"))
    assert money.total == D("50.40")  # 40 - 3 + 5 + 8.40
    # parcel 1: 2 x A = 2/3 of 32.40 = 21.60; parcel 2: 1 x A + B = 10.80 + 12.00 = 22.80
    # shipping 6.00 by goods 21.60 : 22.80 -> 2.918.. rounded down 2.91, the last 3.09
    amounts = shipment_amounts(money, [[U("A", 2)], [U("A", 1), U("B", 1)]])
    assert amounts == [D("24.51"), D("25.89")]
    assert refund_of(money, "A", 1, 0) == D("10.80")
    included = OrderMoney(lines=money.lines, shipping=D("5.00"), shipping_tax=D("1.00"), taxes_included=True)
    assert included.total == D("42.00")  # the tax is in the prices


def _order(**extra: object) -> str:
    import json

    base: dict[str, object] = {
        "channel": "web",
        "customer": {"id": "C1", "name": "Ann", "email": "ann@example.com"},
        "shipping_address": {
            "name": "Ann",
            "line1": "1 Road",
            "city": "Leeds",
            "postal_code": "LS1 1AA",
            "country": "GB",
        },
        "currency": "GBP",
        "payment": {"token": "tok_ok"},
        "lines": [
            {
                "sku": "A",
                "quantity": 2,
                "unit_price": "10.00",
                "tax_lines": [{"title": "VAT", "rate": "0.2", "price": "3.60"}],
                "discount_allocations": [{"amount": "2.00"}],
            }
        ],
        "shipping_lines": [{"title": "Standard", "price": "4.99"}],
    }
    base.update(extra)
    return json.dumps(base)


@pytest.mark.parametrize(
    ("price", "rates", "included", "charge"),
    [
        (D("10.00"), [D("0.2")], False, D("12.00")),  # its catalog price plus the returned line's VAT
        (D("9.99"), [D("0.07"), D("0.025")], False, D("10.94")),  # 0.70 and 0.25: each tax to the cent
        (D("10.00"), [D("0.2")], True, D("10.00")),  # prices include tax: the catalog price is all of it
        (D("10.00"), [], False, D("10.00")),  # an untaxed line: an untaxed replacement
    ],
)
def test_a_replacement_is_taxed_as_the_returned_line(
    price: Decimal, rates: list[Decimal], included: bool, charge: Decimal
) -> None:
    assert replacement_charge(price, rates, included) == charge


def test_the_door_takes_reconciled_money() -> None:
    order = parse_order(_order(discount_codes=[{"code": "TWO", "amount": "2.00"}], total_price="26.59"))
    money = order.money([D("10.00")])
    assert (money.subtotal, money.discounts, money.shipping, money.tax, money.total) == (
        D("20.00"),
        D("2.00"),
        D("4.99"),
        D("3.60"),
        D("26.59"),
    )


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"discount_codes": [{"code": "TWO", "amount": "2.50"}]}, "a difference of 0.50"),
        ({"total_price": "26.60"}, "a difference of 0.01"),
        ({"shipping_lines": [{"title": "x", "price": "-1.00"}]}, "shipping_lines"),
        (
            {
                "lines": [
                    {"sku": "A", "quantity": 1, "tax_lines": [{"title": "VAT", "rate": "0.2", "price": "1"}]}
                ]
            },
            "no unit_price",
        ),
        (
            {
                "lines": [
                    {
                        "sku": "A",
                        "quantity": 1,
                        "unit_price": "1.00",
                        "discount_allocations": [{"amount": "1.01"}],
                    }
                ]
            },
            "exceed the line's price",
        ),
        (
            {
                "lines": [
                    {
                        "sku": "A",
                        "quantity": 1,
                        "unit_price": "1",
                        "tax_lines": [{"title": "T", "rate": "1.5", "price": "0"}],
                    }
                ]
            },
            "rate",
        ),
    ],
)
def test_the_door_refuses_money_that_does_not_reconcile(extra: dict[str, object], says: str) -> None:
    with pytest.raises(OrderInputError, match=says):
        parse_order(_order(**extra))


# ---- line edits (models/edited_lines.py) ----


@st.composite
def placed_orders(draw: st.DrawFn) -> tuple[list[LineIn], list[PricedLine], bool]:
    """A placed order's lines (as the source sent them, and as priced): every line taxed at the same
    rates, each line's discount at most its price."""
    rates = draw(
        st.lists(st.sampled_from([D("0.05"), D("0.07"), D("0.2"), D("0.1925")]), max_size=2, unique=True)
    )
    included = draw(st.booleans())
    placed, priced = [], []
    for n in range(draw(st.integers(min_value=1, max_value=4))):
        quantity = draw(st.integers(min_value=1, max_value=9))
        price = draw(st.integers(min_value=1, max_value=50_000).map(lambda c: D(c).scaleb(-2)))
        gross = price * quantity
        discount = draw(st.integers(min_value=0, max_value=int(gross * 100)).map(lambda c: D(c).scaleb(-2)))
        taxes = [(rate, tax_at(gross - discount, [rate], included)) for rate in rates]
        sku = f"S{n}"
        placed.append(
            LineIn.model_validate(
                {
                    "sku": sku,
                    "quantity": quantity,
                    "unit_price": str(price),
                    "tax_lines": [{"title": "T", "rate": str(r), "price": str(t)} for r, t in taxes],
                    "discount_allocations": [{"amount": str(discount)}] if discount else [],
                }
            )
        )
        priced.append(
            PricedLine(
                sku=sku,
                name=sku,
                quantity=quantity,
                unit_price=price,
                line_total=gross,
                discount=discount,
                tax=sum((t for _, t in taxes), D(0)),
            )
        )
    return placed, priced, included


@given(placed_orders(), st.data())
def test_line_edits_keep_every_figure_whole_and_going_back_restores_the_placed_lines(
    order: tuple[list[LineIn], list[PricedLine], bool], data: st.DataObject
) -> None:
    placed, priced, included = order
    new = PricedLine(sku="NEW", name="NEW", quantity=1, unit_price=D("3.99"), line_total=D("3.99"))
    current = priced
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        skus = [x.sku for x in placed] + ["NEW"]
        wanted = {sku: data.draw(st.integers(min_value=0, max_value=12)) for sku in skus}
        if not any(wanted.values()):
            continue
        added = {} if any(x.sku == "NEW" for x in current) else {"NEW": new}
        current = edited_lines(priced + current, placed, wanted, added, included)
        money = OrderMoney(
            lines=tuple(x.money() for x in current), shipping=D("4.90"), taxes_included=included
        )
        for line in current:
            assert D(0) <= line.discount <= line.line_total and line.tax >= 0
            assert line.tax == line.tax.quantize(D("0.01")) and line.discount == line.discount.quantize(
                D("0.01")
            )
        assert money.total >= 0
        assert sum(shipment_amounts(money, [[U(x.sku, x.quantity)] for x in current]), D(0)) == money.total
    back = edited_lines(priced + current, placed, {x.sku: x.quantity for x in placed}, {}, included)
    assert back == priced
