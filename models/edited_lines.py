"""The order's lines after a line edit (issue 26): what each line charges once its quantity changed or
it was added. Pure; the rule is docs/orders.md's "Editing an order".

- A line the order was placed with keeps its unit price, and its discount and tax scale with its
  quantity from what it was placed with (rounded half-even to the cent): going back to the placed
  quantity gives back the placed figures exactly, whatever edits came between.
- A SKU added by an edit is priced from the catalog, carries no discount, and is taxed at the rates
  every line of the order was placed with (no tax when none was); when the lines were taxed at
  different rates, the tax of a new SKU is not known and the edit is refused.
- The shipping charge does not change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal

from models.order_money import CENT, ZERO, tax_at
from models.orders import LineIn, PricedLine


class LineEditInvalid(ValueError):
    """The edit cannot be priced as asked: the reason, in words."""


def shared_rates(placed: Sequence[LineIn]) -> tuple[Decimal, ...] | None:
    """The tax rates every placed line carries (empty: untaxed); None when the lines differ."""
    rates = {tuple(sorted(tax.rate for tax in line.tax_lines)) for line in placed}
    return next(iter(rates)) if len(rates) == 1 else None


def edited_lines(
    known: Sequence[PricedLine],
    placed: Sequence[LineIn],
    wanted: Mapping[str, int],
    added: Mapping[str, PricedLine],
    taxes_included: bool,
) -> list[PricedLine]:
    """The order's lines with `wanted` units of each SKU (one line per SKU; 0: none), in the order's
    line order, new SKUs last in `wanted`'s order. `known`: every line the order has had, as placed and
    priced, then as edited (a line keeps the unit price it had, also once removed and added again);
    `placed`: the lines as the order was placed (the basis of each line's discount and tax); `added`:
    the catalog's price of each SKU the order never had. Raises LineEditInvalid."""
    basis: dict[str, tuple[int, Decimal, Decimal]] = {}  # sku -> placed units, their discount, their tax
    for line in placed:
        units, discount, tax = basis.get(line.sku, (0, ZERO, ZERO))
        basis[line.sku] = (
            units + line.quantity,
            discount + sum((d.amount for d in line.discount_allocations), ZERO),
            tax + sum((t.price for t in line.tax_lines), ZERO),
        )
    priced = {line.sku: line for line in reversed(known)} | {sku: line for sku, line in added.items()}
    skus = list(dict.fromkeys([line.sku for line in known] + list(wanted)))
    lines = []
    for sku in skus:
        quantity = wanted.get(sku, 0)
        if quantity <= 0:
            continue
        if sku not in priced:
            raise LineEditInvalid(f"SKU {sku} has no price")
        unit = priced[sku]
        gross = unit.unit_price * quantity
        if sku in basis:
            units, discount, tax = basis[sku]
            discount, tax = _scaled(discount, quantity, units), _scaled(tax, quantity, units)
        else:
            rates = shared_rates(placed)
            if rates is None:
                raise LineEditInvalid(
                    f"the order's lines are taxed at different rates, so the tax of {sku} is not known: "
                    "add it as an order of its own"
                )
            discount, tax = ZERO, tax_at(gross, rates, taxes_included)
        lines.append(
            PricedLine(
                sku=sku,
                name=unit.name,
                quantity=quantity,
                unit_price=unit.unit_price,
                line_total=gross,
                discount=discount,
                tax=tax,
            )
        )
    return lines


def _scaled(amount: Decimal, quantity: int, units: int) -> Decimal:
    return (amount * quantity / units).quantize(CENT, rounding=ROUND_HALF_EVEN) + ZERO
