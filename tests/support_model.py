"""What support's changes to one order must do to its money and stock: a model the sequence property
(tests/test_support_sequences.py) runs beside the real stack, computed from the order's lines and the
units that moved with models/order_money.py, never from what the system recorded.

The model says, for each change, whether the order must take it or refuse it (docs/orders.md's rules:
partial cancels of units not yet packed, returns of delivered units once every parcel is settled,
goodwill within what was captured and not refunded), and what each parcel captures at its handover:
its share of the order (`shipment_amounts`), less the share of every unit cancelled from it (the
kept units' part of the amount, rounded down: the short pick's rule). A return refunds its units'
cumulative share of their line (`refund_of`), never more than is left to refund.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from enum import IntEnum

from models.order_money import OrderMoney, refund_of, shipment_amounts, split
from models.orders import ShipmentLine

ZERO = Decimal("0")


class Stage(IntEnum):
    """A parcel's way, in order (a cancelled one has no units left and is out of the order's way)."""

    released = 0
    picked = 1
    packed = 2
    shipped = 3
    delivered = 4
    cancelled = 5


CANCELLABLE_UNITS = (Stage.released, Stage.picked)  # not yet packed: a partial cancel can take them


@dataclass
class Parcel:
    id: str
    units: Counter[str]
    amount: Decimal  # what it captures when handed over
    stage: Stage = Stage.released


@dataclass
class OrderModel:
    money: OrderMoney
    parcels: list[Parcel]
    ended: bool = False  # cancelled as a whole
    captured: Decimal = ZERO
    return_refunds: Decimal = ZERO
    goodwill: Decimal = ZERO
    handed_over: Counter[str] = field(default_factory=Counter)
    returned: Counter[str] = field(default_factory=Counter)  # units refunded by returns, per SKU
    restocked: Counter[str] = field(default_factory=Counter)  # of those, back on the shelf (good)

    @classmethod
    def of(cls, money: OrderMoney, shipments: list[tuple[str, list[ShipmentLine]]]) -> OrderModel:
        """The order as allocated: its parcels (id, lines) in the order the system numbers them."""
        amounts = shipment_amounts(money, [lines for _, lines in shipments])
        return cls(
            money=money,
            parcels=[
                Parcel(sid, Counter({x.sku: x.quantity for x in lines}), amount)
                for (sid, lines), amount in zip(shipments, amounts, strict=True)
            ],
        )

    # ---- where the order is ----

    def moving(self) -> list[Parcel]:
        """Parcels still on their way to the customer."""
        return [p for p in self.parcels if p.stage < Stage.delivered]

    def fulfilled(self) -> bool:
        """Every parcel delivered or cancelled: what was not captured is voided, returns may start."""
        return not self.ended and not self.moving()

    def delivered(self) -> Counter[str]:
        units: Counter[str] = Counter()
        for p in self.parcels:
            if p.stage == Stage.delivered:
                units += p.units
        return units

    @property
    def refunded(self) -> Decimal:
        return self.return_refunds + self.goodwill

    @property
    def refundable(self) -> Decimal:
        return self.captured - self.refunded

    @property
    def voided(self) -> Decimal:
        """What the end of fulfilment (or a whole cancel) releases of the authorization."""
        return self.money.total - self.captured if self.ended or self.fulfilled() else ZERO

    # ---- support's changes: None = refused, nothing moves ----

    def cancellable(self) -> Counter[str]:
        """Units a partial cancel can still take: those of parcels not yet packed."""
        return sum((p.units for p in self.parcels if p.stage in CANCELLABLE_UNITS), Counter())

    def cancel_plan(self, wanted: dict[str, int]) -> str | None:
        """'whole' (the units named are all that remain: the order is cancelled), 'partial', or None."""
        moving = [p for p in self.parcels if p.stage != Stage.cancelled]
        if self.ended or not moving or min(p.stage for p in moving) > Stage.packed:
            return None  # the order shipped (its least advanced parcel is with the carrier)
        remains = self.cancellable()
        if any(n > remains[sku] for sku, n in wanted.items()):
            return None
        if all(
            p.stage in (*CANCELLABLE_UNITS, Stage.cancelled) for p in self.parcels
        ) and +remains == +Counter(wanted):
            return "whole"
        return "partial"

    def cancel(self, wanted: dict[str, int]) -> None:
        """Take the units off the least advanced parcels first, each keeping its amount's share of
        what stays (rounded down)."""
        if self.cancel_plan(wanted) == "whole":
            self.ended = True
            for p in self.parcels:
                p.stage = Stage.cancelled
            return
        left = Counter(wanted)
        for p in sorted(
            (p for p in self.parcels if p.stage in CANCELLABLE_UNITS), key=lambda p: p.stage
        ):  # sorted() is stable: parcels of one stage in their order
            going = Counter({sku: min(left[sku], n) for sku, n in p.units.items() if left[sku] > 0})
            if not +going:
                continue
            kept = p.units - going
            kept_lines = [ShipmentLine(sku=s, quantity=n) for s, n in kept.items()]
            going_lines = [ShipmentLine(sku=s, quantity=n) for s, n in going.items()]
            p.amount = split(p.amount, [self.money.value_of(kept_lines), self.money.value_of(going_lines)])[0]
            p.units = kept
            left -= going
            if not +kept:
                p.stage = Stage.cancelled

    def hand_over(self, parcel: Parcel) -> None:
        parcel.stage = Stage.shipped
        self.captured += parcel.amount
        self.handed_over += parcel.units

    def returnable(self, sku: str) -> int:
        return self.delivered()[sku] - self.returned[sku]

    def can_return(self, sku: str, quantity: int) -> bool:
        return self.fulfilled() and 0 < quantity <= self.returnable(sku)

    def return_units(self, sku: str, quantity: int, good: bool) -> Decimal:
        """Record a received return; the refund it must get."""
        refund = min(refund_of(self.money, sku, quantity, self.returned[sku]), self.refundable)
        self.returned[sku] += quantity
        if good:
            self.restocked[sku] += quantity
        self.return_refunds += refund
        return refund

    def can_goodwill(self, amount: Decimal) -> bool:
        return not self.ended and self.captured > 0 and 0 < amount <= self.refundable

    # ---- what must hold at the end ----

    def status(self) -> str:
        """The order's status once settled, as support reads it: every delivered unit back is
        `returned`, some of them `partially_returned`."""
        if self.ended:
            return "cancelled"
        delivered, returned = sum(self.delivered().values()), sum(self.returned.values())
        if returned == 0:
            return "delivered"
        return "returned" if returned == delivered else "partially_returned"

    def left_the_shelf(self) -> Counter[str]:
        """Units per SKU that left the warehouses for good: handed over less those restocked."""
        return self.handed_over - self.restocked

    def kept_value(self) -> Decimal:
        """What the customer keeps and pays for: the parcels handed over less the returns' refunds."""
        return self.captured - self.return_refunds
