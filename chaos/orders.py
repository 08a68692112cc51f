"""The orders a scenario places: real Olist marketplace orders (as `make bench` builds them, from
../shared/data/olist) or, where the sample is missing, synthetic ones; each given a role that decides
its payment token, what the harness does with it, and how it must end.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from models.catalog import CatalogFile, ProductRow, StockRow, WarehouseRow
from models.orders import Address, Channel, CustomerIn, LineIn, OrderInput, OrderStatus, PaymentIn


class Role(StrEnum):
    visa = "visa"  # tok_visa: confirmed, shipped, delivered (the harness confirms it), completed
    flaky = "flaky"  # tok_flaky: the authorization fails transiently twice, then as visa
    declined = "declined"  # tok_declined: rejected, nothing reserved, nothing charged
    cancel = "cancel"  # cancelled right after placement, at whatever step it has reached
    hold_release = "hold_release"  # over the review limit: held, released by the harness, then as visa
    hold_cancel = "hold_cancel"  # over the review limit: held, then cancelled by the harness


TOKENS = {
    Role.visa: "tok_visa",
    Role.flaky: "tok_flaky",
    Role.declined: "tok_declined",
    Role.cancel: "tok_visa",
    Role.hold_release: "tok_visa",
    Role.hold_cancel: "tok_visa",
}
EXPECTED = {
    Role.visa: OrderStatus.completed,
    Role.flaky: OrderStatus.completed,
    Role.declined: OrderStatus.rejected,
    Role.cancel: OrderStatus.cancelled,
    Role.hold_release: OrderStatus.completed,
    Role.hold_cancel: OrderStatus.cancelled,
}
# Orders at or below the review limit take these roles in turn (the top fifth by total are held).
UNDER_LIMIT_CYCLE = [Role.visa, Role.flaky, Role.declined, Role.cancel, Role.visa, Role.declined, Role.flaky]
HELD_SHARE = 0.2


@dataclass
class PlannedOrder:
    order: OrderInput
    role: Role
    total: Decimal
    expected: OrderStatus  # a cancellation that came too late (the order had packed) expects `completed`

    @property
    def order_id(self) -> str:
        assert self.order.order_id is not None
        return self.order.order_id


@dataclass(frozen=True)
class OrderSource:
    catalog: CatalogFile
    orders: list[OrderInput]
    origin: str  # "Olist" or "synthetic"


def load_orders(count: int) -> OrderSource:
    """`count` real Olist orders and their catalog; synthetic ones if the sample is not there."""
    from bench.throughput import load_sample  # the same orders `make bench` replays

    try:
        sample = load_sample(count)
    except SystemExit as missing:  # load_sample explains what is missing
        print(f"[chaos] {missing}; using synthetic orders instead", file=sys.stderr)
        return synthetic_orders(count)
    return OrderSource(sample.catalog, sample.orders, "Olist")


def synthetic_orders(count: int, seed: int = 7) -> OrderSource:
    rng = random.Random(seed)
    skus = [f"SY-{n:04d}" for n in range(max(10, count // 2))]
    products = [
        ProductRow(
            sku=sku,
            name=f"Synthetic {sku}",
            price=Decimal(rng.randint(500, 30000)) / 100,
            currency="EUR",
            weight_g=400,
        )
        for sku in skus
    ]
    orders = [
        OrderInput(
            order_id=f"SY-{n:05d}",
            channel=Channel.web,
            customer=CustomerIn(id=f"C-{n % 97}", name=f"Customer {n % 97}", email=f"c{n % 97}@example.com"),
            shipping_address=Address(
                name="Customer", line1="1 Main St", city="Springfield", postal_code="12345", country="US"
            ),
            lines=[
                LineIn(sku=sku, quantity=rng.randint(1, 3)) for sku in rng.sample(skus, rng.randint(1, 3))
            ],
            currency="EUR",
            payment=PaymentIn(token="tok_visa"),
        )
        for n in range(count)
    ]
    catalog = CatalogFile(
        warehouses=[WarehouseRow(code="W1", name="Warehouse 1", priority=10)],
        products=products,
        stock=[StockRow(sku=sku, warehouse="W1", on_hand=10 * count) for sku in skus],
    )
    return OrderSource(catalog, orders, "synthetic")


def plan_orders(source: OrderSource, prefix: str, rng: random.Random) -> tuple[list[PlannedOrder], Decimal]:
    """Give each order a role and its own id (`prefix-...`), in a shuffled placement order; returns the
    orders and the review limit that holds the top fifth of them by total."""
    prices = {p.sku: p.price for p in source.catalog.products}
    totals = [sum((prices[x.sku] * x.quantity for x in o.lines), Decimal("0")) for o in source.orders]
    ranked = sorted(totals)
    limit = ranked[min(len(ranked) - 1, int(len(ranked) * (1 - HELD_SHARE)))]
    planned: list[PlannedOrder] = []
    held = under = 0
    for order, total in zip(source.orders, totals, strict=True):
        if total > limit:
            role = Role.hold_release if held % 2 == 0 else Role.hold_cancel
            held += 1
        else:
            role = UNDER_LIMIT_CYCLE[under % len(UNDER_LIMIT_CYCLE)]
            under += 1
        assert order.order_id is not None
        order = order.model_copy(
            update={"order_id": f"{prefix}-{order.order_id}", "payment": PaymentIn(token=TOKENS[role])}
        )
        planned.append(PlannedOrder(order, role, total, EXPECTED[role]))
    rng.shuffle(planned)
    return planned, limit
