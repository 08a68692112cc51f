"""The order's money: its totals, and how they are shared out over shipments and returns. Pure.

The rule (docs/orders.md, "The order's money"):

    total = subtotal - discounts + shipping + (tax if not taxes_included)

A line *charges* its price less its discount allocations, plus its tax when prices exclude tax; the
shipping charges its price plus its own tax likewise. The line charges and the shipping charge add up
to the total exactly, so any split of them adds up to it too:

- a SKU's charge goes to the shipments in proportion to their units of it;
- the shipping charge goes to the shipments in proportion to the goods they charge;
- every share is rounded down to the cent except the last shipment's, which takes the remainder.

A returned unit refunds its share of its line's charge (discounted price and tax), by cumulative
rounding: returning every unit, in any number of returns, refunds exactly the line's charge. The
shipping comes back only when a parcel is refunded as a whole (lost, sent back) or never charged
(cancelled): it is in that parcel's amount.

An exchange credits the returned units what a refund would, and charges the replacement its catalog
price, taxed at the returned line's rates when prices exclude tax; the returned line's discount stays
with the returned line (`replacement_charge`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Protocol

CENT = Decimal("0.01")
ZERO = Decimal("0")


class Units(Protocol):
    """A line of a shipment or a return: so many units of a SKU."""

    @property
    def sku(self) -> str: ...

    @property
    def quantity(self) -> int: ...


@dataclass(frozen=True)
class LineMoney:
    """One order line's money: its price before discounts, its discount and its tax."""

    sku: str
    quantity: int
    gross: Decimal  # unit price x quantity
    discount: Decimal = ZERO
    tax: Decimal = ZERO


@dataclass(frozen=True)
class OrderMoney:
    lines: tuple[LineMoney, ...]
    shipping: Decimal = ZERO
    shipping_tax: Decimal = ZERO
    taxes_included: bool = False

    @property
    def subtotal(self) -> Decimal:
        return sum((line.gross for line in self.lines), ZERO)

    @property
    def discounts(self) -> Decimal:
        return sum((line.discount for line in self.lines), ZERO)

    @property
    def tax(self) -> Decimal:
        return sum((line.tax for line in self.lines), self.shipping_tax)

    @property
    def total(self) -> Decimal:
        added_tax = ZERO if self.taxes_included else self.tax
        return self.subtotal - self.discounts + self.shipping + added_tax

    def with_lines(self, lines: Iterable[LineMoney]) -> OrderMoney:
        """The same order with other lines (an edit): shipping and its tax stay."""
        return replace(self, lines=tuple(lines))

    def line_charge(self, line: LineMoney) -> Decimal:
        return line.gross - line.discount + (ZERO if self.taxes_included else line.tax)

    @property
    def shipping_charge(self) -> Decimal:
        return self.shipping + (ZERO if self.taxes_included else self.shipping_tax)

    def sku_charges(self) -> dict[str, tuple[Decimal, int]]:
        """sku -> (its lines' charge, their units): lines of the same SKU count as one."""
        charges: dict[str, tuple[Decimal, int]] = {}
        for line in self.lines:
            charge, units = charges.get(line.sku, (ZERO, 0))
            charges[line.sku] = (charge + self.line_charge(line), units + line.quantity)
        return charges

    def value_of(self, units: Iterable[Units]) -> Decimal:
        """What `units` charge, unrounded: the weight a part of a shipment carries when it is split."""
        charges = self.sku_charges()
        total = ZERO
        for x in units:
            charge, count = charges.get(x.sku, (ZERO, 0))
            if count:
                total += charge * x.quantity / count
        return total


def split(total: Decimal, weights: Sequence[Decimal]) -> list[Decimal]:
    """`total` in proportion to `weights`: each share rounded down to the cent, the last one the
    remainder, so the shares add up to `total` exactly. No weight at all: the last takes everything."""
    if not weights:
        return []
    whole = sum(weights, ZERO)
    if whole <= 0:
        return [ZERO] * (len(weights) - 1) + [total]
    # multiply first: an exact quotient (a share that is whole cents) stays exact, no 9.999...
    # + ZERO: a refund's zero share is 0.00, not Decimal's -0.00
    shares = [(total * w / whole).quantize(CENT, rounding=ROUND_DOWN) + ZERO for w in weights[:-1]]
    return shares + [total - sum(shares, ZERO)]


def shipment_amounts(money: OrderMoney, shipments: Sequence[Sequence[Units]]) -> list[Decimal]:
    """What each shipment captures: its units' share of each SKU's charge plus its share of the
    shipping charge. Adds up to `money.total` when the shipments hold every unit of the order."""
    amounts = [ZERO] * len(shipments)
    for sku, (charge, _) in money.sku_charges().items():
        units = [Decimal(sum(x.quantity for x in s if x.sku == sku)) for s in shipments]
        for n, share in enumerate(split(charge, units)):
            amounts[n] += share
    goods = list(amounts)
    for n, share in enumerate(split(money.shipping_charge, goods)):
        amounts[n] += share
    return amounts


def refund_of(money: OrderMoney, sku: str, quantity: int, already: int) -> Decimal:
    """The refund for `quantity` returned units of `sku` when `already` units of it were refunded
    before: the difference of two rounded cumulative shares, so all of them refund the charge exactly."""
    charge, units = money.sku_charges().get(sku, (ZERO, 0))
    if units == 0:
        return ZERO
    done = min(already, units)
    upto = min(already + quantity, units)

    def share(n: int) -> Decimal:
        return (charge * n / units).quantize(CENT, rounding=ROUND_HALF_EVEN)

    return share(upto) - share(done)


def replacement_charge(price: Decimal, rates: Iterable[Decimal], taxes_included: bool) -> Decimal:
    """What an exchange's replacement charges at catalog `price` (unit price x units): that price, plus
    each of the returned line's tax rates on it (each tax rounded to the cent) when the order's prices
    exclude tax. No discount: the order's discounts were given for what it bought, not for a swap."""
    return price if taxes_included else price + tax_at(price, rates, taxes_included=False)


def tax_at(net: Decimal, rates: Iterable[Decimal], taxes_included: bool) -> Decimal:
    """The tax on `net` (a price less its discount) at `rates`, each rounded half-even to the cent: on
    top of it, or within it when prices include tax."""
    rates = list(rates)
    whole = 1 + sum(rates, ZERO) if taxes_included else Decimal(1)
    return sum(((net * rate / whole).quantize(CENT, rounding=ROUND_HALF_EVEN) for rate in rates), ZERO)


@dataclass(frozen=True)
class MoneyParts:
    """An order's total as finance books it: goods (net of discounts, and of tax when prices include
    it), shipping (net of its tax) and tax add up to the total; `discounts` is what the goods' price
    was reduced by, a memo beside them."""

    goods: Decimal
    shipping: Decimal
    tax: Decimal
    discounts: Decimal = ZERO

    @classmethod
    def of(cls, money: OrderMoney) -> MoneyParts:
        line_tax = money.tax - money.shipping_tax
        included = money.taxes_included
        return cls(
            goods=money.subtotal - money.discounts - (line_tax if included else ZERO),
            shipping=money.shipping - (money.shipping_tax if included else ZERO),
            tax=money.tax,
            discounts=money.discounts,
        )

    @classmethod
    def all_goods(cls, total: Decimal) -> MoneyParts:
        """An order that carries no split (placed before issue 26): all of it is goods."""
        return cls(goods=total, shipping=ZERO, tax=ZERO)


@dataclass(frozen=True)
class MovementParts:
    net: Decimal  # goods
    tax: Decimal
    shipping: Decimal
    discount: Decimal  # memo: the discount behind this movement's goods


def movement_parts(amount: Decimal, parts: MoneyParts) -> MovementParts:
    """A payment movement (a capture, a refund) split in its order's proportions. net + tax + shipping
    is `amount` exactly: tax and shipping are rounded down, the goods take the remainder (an order
    with neither books every cent as goods)."""
    tax, shipping, net = split(amount, [parts.tax, parts.shipping, parts.goods])
    whole = parts.goods + parts.shipping + parts.tax
    discount = (
        (amount * parts.discounts / whole).quantize(CENT, rounding=ROUND_DOWN) + ZERO if whole > 0 else ZERO
    )
    return MovementParts(net=net, tax=tax, shipping=shipping, discount=discount)


def stored_parts(
    total: Decimal | None,
    subtotal: Decimal | None,
    discounts: Decimal | None,
    shipping: Decimal | None,
    shipping_tax: Decimal | None,
    tax: Decimal | None,
    taxes_included: bool | None,
) -> MoneyParts:
    """The parts from the orders row's columns (models/tables.py); no subtotal: an order priced before
    issue 26 (or never priced), all goods."""
    if subtotal is None:
        return MoneyParts.all_goods(total or ZERO)
    tax, shipping_tax = tax or ZERO, shipping_tax or ZERO
    goods = LineMoney(sku="", quantity=1, gross=subtotal, discount=discounts or ZERO, tax=tax - shipping_tax)
    return MoneyParts.of(
        OrderMoney(
            lines=(goods,),
            shipping=shipping or ZERO,
            shipping_tax=shipping_tax,
            taxes_included=bool(taxes_included),
        )
    )
