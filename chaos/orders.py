"""The orders a scenario places and the catalog they are placed against: real Olist marketplace orders (as
`make bench` builds them, from ../shared/data/olist) or, where the sample is missing, synthetic ones.

Each order gets a role: its payment token, the policy it is placed under, where its stock is (which
decides the path: the sandbox warehouses SP and RJ work by themselves, MN is a manual warehouse the run
plays itself, over the client layer or the HTTP API), what the run does with it, and how it must end.
Each order also gets its door: the client layer (`services.*`) or the HTTP API (`python -m api`).
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum

from models.catalog import CatalogFile, ProductRow, StockRow, WarehouseRow
from models.orders import (
    Address,
    Channel,
    CustomerIn,
    LineIn,
    OrderInput,
    OrderPolicy,
    OrderStatus,
    PaymentIn,
)

AUTO = "SP"  # the sandbox warehouse every plain order ships from
SECOND = "RJ"  # the second sandbox warehouse (split shipments)
MANUAL = "MN"  # the manual warehouse: the run is its staff (reports picks, packs and handovers)
PLENTY = 1000  # units of a plain SKU in SP
MANUAL_STOCK = 10  # units of an MN-only SKU
ON_ORDER = 5  # units on the open purchase order of a backorder role's SKU


class Stock(StrEnum):
    """Where a role's SKUs are stocked (every SKU of an order with an exclusive placement is its own)."""

    plain = "plain"  # SP, plenty
    manual = "manual"  # MN only
    short_realloc = "short_realloc"  # the first line: exactly its quantity in MN, plenty in SP; the rest MN
    short_backorder = "short_backorder"  # MN exactly, nothing elsewhere, a purchase order open
    short_cancel = "short_cancel"  # MN exactly, nothing elsewhere, nothing on order
    split = "split"  # the first line: 1 unit in SP, the rest in RJ; the others SP
    backorder = "backorder"  # none anywhere, a purchase order open


class Role(StrEnum):
    visa = "visa"  # tok_visa: confirmed, shipped (SP), delivered (the run confirms it), completed
    flaky = "flaky"  # tok_flaky: the authorization fails transiently twice, then as visa
    declined = "declined"  # tok_declined: rejected, nothing reserved, nothing charged
    cancel = "cancel"  # cancelled right after placement, at whatever step it has reached
    hold_release = "hold_release"  # over the review limit: held (a support note), released, then as visa
    hold_cancel = "hold_cancel"  # over the review limit: held (a support note), then cancelled
    cancel_in_window = "cancel_in_window"  # stock reserved, cancelled inside the release window
    cancel_after_pick = "cancel_after_pick"  # MN: picked (the run reports it), then cancelled
    cancel_after_pack = "cancel_after_pack"  # MN: picked, packed (labelled, booked), then cancelled
    manual = "manual"  # MN: picked, packed, handed over by the run; delivered by a carrier event
    split = "split"  # two shipments (SP and RJ), each captured and delivered
    short_realloc = "short_realloc"  # MN picks one unit short: re-allocated to SP, both delivered
    short_backorder = "short_backorder"  # MN short, stock on order: backordered, the run books goods in
    short_cancel = "short_cancel"  # MN short, nothing anywhere: that unit cancelled, not charged
    backorder_filled = "backorder_filled"  # out of stock but on order: backordered, goods booked in, shipped
    backorder_timeout = "backorder_timeout"  # backordered, nothing arrives: the backorder timeout cancels
    return_good = "return_good"  # delivered, feedback, returned in good condition: refunded, restocked
    return_damaged = "return_damaged"  # the same, received damaged: refunded, written off
    lost_reship = "lost_reship"  # the carrier reports it lost; support reships (charged once)
    lost_refund = "lost_refund"  # lost; support refunds
    lost_timeout = "lost_timeout"  # returned to sender; no choice: the exception timeout refunds, restocked


@dataclass(frozen=True)
class RoleSpec:
    token: str
    expected: OrderStatus
    stock: Stock = Stock.plain
    min_quantity: int = 1  # the first line's quantity is raised to this (a short pick needs 2 units)
    own_policy: bool = False  # placed under a policy of its own (then never through POST /orders)

    @property
    def exclusive(self) -> bool:
        return self.stock != Stock.plain


COMPLETED, CANCELLED, REJECTED = OrderStatus.completed, OrderStatus.cancelled, OrderStatus.rejected
SPECS: dict[Role, RoleSpec] = {
    Role.visa: RoleSpec("tok_visa", COMPLETED),
    Role.flaky: RoleSpec("tok_flaky", COMPLETED),
    Role.declined: RoleSpec("tok_declined", REJECTED),
    Role.cancel: RoleSpec("tok_visa", CANCELLED),
    Role.hold_release: RoleSpec("tok_visa", COMPLETED),
    Role.hold_cancel: RoleSpec("tok_visa", CANCELLED),
    Role.cancel_in_window: RoleSpec("tok_visa", CANCELLED, own_policy=True),
    Role.cancel_after_pick: RoleSpec("tok_visa", CANCELLED, Stock.manual),
    Role.cancel_after_pack: RoleSpec("tok_visa", CANCELLED, Stock.manual),
    Role.manual: RoleSpec("tok_visa", COMPLETED, Stock.manual),
    Role.split: RoleSpec("tok_visa", COMPLETED, Stock.split, min_quantity=2),
    Role.short_realloc: RoleSpec("tok_visa", COMPLETED, Stock.short_realloc, min_quantity=2),
    Role.short_backorder: RoleSpec("tok_visa", COMPLETED, Stock.short_backorder, min_quantity=2),
    Role.short_cancel: RoleSpec("tok_visa", COMPLETED, Stock.short_cancel, min_quantity=2),
    Role.backorder_filled: RoleSpec("tok_visa", COMPLETED, Stock.backorder),
    Role.backorder_timeout: RoleSpec("tok_visa", CANCELLED, Stock.backorder, own_policy=True),
    Role.return_good: RoleSpec("tok_visa", COMPLETED, own_policy=True),
    Role.return_damaged: RoleSpec("tok_visa", COMPLETED, own_policy=True),
    Role.lost_reship: RoleSpec("tok_visa", COMPLETED),
    Role.lost_refund: RoleSpec("tok_visa", COMPLETED),
    Role.lost_timeout: RoleSpec("tok_visa", COMPLETED, own_policy=True),
}
MANUAL_ROLES = frozenset(r for r, s in SPECS.items() if s.stock.startswith(("manual", "short")))
RETURN_ROLES = frozenset({Role.return_good, Role.return_damaged})
LOST_ROLES = frozenset({Role.lost_reship, Role.lost_refund, Role.lost_timeout})
SHORT_ROLES = frozenset({Role.short_realloc, Role.short_backorder, Role.short_cancel})
BACKORDER_ROLES = frozenset({Role.backorder_filled, Role.backorder_timeout})

# Orders at or below the review limit take these roles in turn (an order takes the first role still
# owed that it can play: one whose stock must be its own needs SKUs no other order has); the top fifth
# by total are held.
UNDER_LIMIT_CYCLE = [
    Role.visa, Role.cancel_after_pick, Role.split, Role.return_good, Role.flaky, Role.lost_reship,
    Role.declined, Role.short_realloc, Role.cancel_in_window, Role.manual, Role.backorder_filled,
    Role.return_damaged, Role.cancel, Role.cancel_after_pack, Role.lost_refund, Role.short_backorder,
    Role.visa, Role.backorder_timeout, Role.short_cancel, Role.lost_timeout, Role.declined,
]  # fmt: skip
HELD_SHARE = 0.2
HTTP_EVERY = (
    3  # every third order uses the HTTP API as its door (placed over it unless its policy is its own)
)


class Door(StrEnum):
    client = "client"  # services.* over the Temporal client, as the command line does
    http = "http"  # the HTTP API


@dataclass
class PlannedOrder:
    order: OrderInput
    role: Role
    total: Decimal
    expected: OrderStatus  # a cancellation that came too late (the order had packed) expects `completed`
    door: Door = Door.client
    # False once the run could not take the role's path (a cancellation too late, a return window
    # closed): the order is then checked as a plain order that ends as `expected` says
    on_path: bool = True
    notes: list[str] = field(default_factory=list)  # what the run had to do differently, in words
    returned: int = 0  # units the run returned (return roles)
    rma: str | None = None

    @property
    def order_id(self) -> str:
        assert self.order.order_id is not None
        return self.order.order_id

    @property
    def spec(self) -> RoleSpec:
        return SPECS[self.role]

    @property
    def placed_over_http(self) -> bool:
        return self.door == Door.http and not self.spec.own_policy

    def off_path(self, note: str, expected: OrderStatus | None = None) -> None:
        self.on_path = False
        self.notes.append(note)
        if expected is not None:
            self.expected = expected


@dataclass(frozen=True)
class OrderSource:
    catalog: CatalogFile
    orders: list[OrderInput]
    origin: str  # "Olist" or "synthetic"


@dataclass(frozen=True)
class PurchaseOrderRow:
    po_id: str
    sku: str
    warehouse: str
    quantity: int


@dataclass(frozen=True)
class Plan:
    orders: list[PlannedOrder]  # in placement order
    review_above: Decimal
    catalog: CatalogFile  # warehouses SP, RJ, MN; stock placed for the roles
    purchase_orders: list[PurchaseOrderRow]  # open ones, for the backorder roles

    @property
    def loaded(self) -> dict[tuple[str, str], int]:
        return {(s.sku, s.warehouse): s.on_hand for s in self.catalog.stock}

    @property
    def prices(self) -> dict[str, Decimal]:
        return {p.sku: p.price for p in self.catalog.products}


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
    """Orders of 1 to 3 lines, each SKU an order's own (as in the Olist sample, where few are shared)."""
    rng = random.Random(seed)
    products, orders = [], []
    for n in range(count):
        skus = [f"SY-{n:05d}-{k}" for k in range(rng.randint(1, 3))]
        products += [
            ProductRow(
                sku=sku, name=f"Synthetic {sku}", price=Decimal(rng.randint(500, 30000)) / 100, currency="EUR",
                weight_g=400,
            )
            for sku in skus
        ]  # fmt: skip
        orders.append(
            OrderInput(
                order_id=f"SY-{n:05d}",
                channel=Channel.web,
                customer=CustomerIn(
                    id=f"C-{n % 97}", name=f"Customer {n % 97}", email=f"c{n % 97}@example.com"
                ),
                shipping_address=Address(
                    name="Customer", line1="1 Main St", city="Springfield", postal_code="12345", country="US"
                ),
                lines=[LineIn(sku=sku, quantity=rng.randint(1, 3)) for sku in skus],
                currency="EUR",
                payment=PaymentIn(token="tok_visa"),
            )
        )
    catalog = CatalogFile(warehouses=[WarehouseRow(code=AUTO, name="Warehouse SP")], products=products)
    return OrderSource(catalog, orders, "synthetic")


def _total(order: OrderInput, prices: dict[str, Decimal]) -> Decimal:
    """What the order charges at these prices: its lines and its shipping (Olist's freight)."""
    return order.money([prices[x.sku] for x in order.lines]).total


def _with_quantity(order: OrderInput, quantity: int) -> OrderInput:
    first = order.lines[0]
    if first.quantity >= quantity:
        return order
    lines = [first.model_copy(update={"quantity": quantity}), *order.lines[1:]]
    return order.model_copy(update={"lines": lines})


def plan_orders(
    source: OrderSource,
    prefix: str,
    rng: random.Random,
    count: int | None = None,
    cycle: list[Role] | None = None,
) -> Plan:
    """Give each order a role, its door and its own id (`prefix-...`), in a shuffled placement order;
    place the catalog's stock for the roles. The review limit holds the top fifth of the orders by total.
    With `cycle`, only those roles (in turn) and none held."""
    orders = source.orders[:count] if count else list(source.orders)
    prices = {p.sku: p.price for p in source.catalog.products}
    totals = [_total(o, prices) for o in orders]
    ranked = sorted(totals)
    limit = ranked[min(len(ranked) - 1, int(len(ranked) * (1 - HELD_SHARE)))]
    if cycle:  # nothing held: the limit is above anything an order of these roles can total
        limit = 2 * max(_total(_with_quantity(o, 2), prices) for o in orders) + 1
    uses = Counter(line.sku for o in orders for line in {x.sku: x for x in o.lines}.values())

    def fits(order: OrderInput, role: Role) -> OrderInput | None:
        spec = SPECS[role]
        if spec.exclusive and any(uses[x.sku] > 1 for x in order.lines):
            return None
        changed = _with_quantity(order, spec.min_quantity)
        return changed if _total(changed, prices) <= limit else None

    planned: list[PlannedOrder] = []
    owed: list[Role] = []
    held = 0
    for n, (order, total) in enumerate(zip(orders, totals, strict=True)):
        if total > limit:
            role = Role.hold_release if held % 2 == 0 else Role.hold_cancel
            held += 1
            placed = order
        else:
            if not owed:
                owed = list(cycle or UNDER_LIMIT_CYCLE)
            for i, candidate in enumerate(owed):
                if (changed := fits(order, candidate)) is not None:
                    role, placed = candidate, changed
                    del owed[i]
                    break
            else:  # none of the roles owed fits (shared SKUs): a plain one
                role, placed = Role.visa, order
        assert placed.order_id is not None
        placed = placed.model_copy(
            update={"order_id": f"{prefix}-{placed.order_id}", "payment": PaymentIn(token=SPECS[role].token)}
        )
        door = Door.http if n % HTTP_EVERY == 1 else Door.client
        planned.append(PlannedOrder(placed, role, _total(placed, prices), SPECS[role].expected, door))
    catalog, purchase_orders = _catalog(source.catalog, planned)
    rng.shuffle(planned)
    return Plan(planned, limit, catalog, purchase_orders)


def _catalog(source: CatalogFile, planned: list[PlannedOrder]) -> tuple[CatalogFile, list[PurchaseOrderRow]]:
    """The source's products in three warehouses, stocked as each SKU's order's role needs."""
    stock: dict[tuple[str, str], int] = {}
    purchase_orders: list[PurchaseOrderRow] = []
    placement = {x.sku: (Stock.plain, p) for p in planned for x in p.order.lines}
    for p in planned:
        if p.spec.exclusive:
            placement |= {x.sku: (p.spec.stock, p) for x in p.order.lines}
    for sku, (kind, p) in sorted(placement.items()):
        first = p.order.lines[0]
        qty = sum(x.quantity for x in p.order.lines if x.sku == sku)
        is_first = sku == first.sku
        if kind == Stock.plain:
            stock[(sku, AUTO)] = PLENTY
        elif kind == Stock.manual or (kind.startswith("short") and not is_first):
            stock[(sku, MANUAL)] = MANUAL_STOCK
        elif kind == Stock.short_realloc:
            stock[(sku, MANUAL)], stock[(sku, AUTO)] = qty, PLENTY
        elif kind in (Stock.short_backorder, Stock.short_cancel):
            stock[(sku, MANUAL)] = qty
        elif kind == Stock.split:
            if is_first:
                stock[(sku, AUTO)], stock[(sku, SECOND)] = 1, qty - 1
            else:
                stock[(sku, AUTO)] = PLENTY
        if kind == Stock.backorder:
            stock[(sku, AUTO)] = 0
        if kind == Stock.backorder or (kind == Stock.short_backorder and is_first):
            purchase_orders.append(PurchaseOrderRow(f"PO-CHAOS-{sku}", sku, AUTO, ON_ORDER))
    catalog = CatalogFile(
        warehouses=[
            WarehouseRow(code=MANUAL, name="Manaus (manual: the run is its staff)", priority=5),
            WarehouseRow(code=AUTO, name="São Paulo (sandbox)", priority=10),
            WarehouseRow(code=SECOND, name="Rio de Janeiro (sandbox)", priority=20),
        ],
        products=list(source.products),
        stock=[StockRow(sku=sku, warehouse=wh, on_hand=qty) for (sku, wh), qty in sorted(stock.items())],
    )
    return catalog, purchase_orders


# The policy every order is placed under (the API is started with the same settings), and the roles'
# own: a release window no cancellation misses, short backorder and exception timeouts, and a return
# window long enough for the run to ask for the return (`return_window`, per run size).
RELEASE_WINDOW = timedelta(minutes=10)
SHORT_TIMEOUT = timedelta(seconds=3)
DEFAULT_POLICY = {
    "release_delay": timedelta(0),
    "exception_timeout": timedelta(hours=1),
    "delivery_sla": timedelta(hours=1),
    "return_window": timedelta(seconds=2),
    "hold_timeout": timedelta(hours=1),
    "backorder_timeout": timedelta(hours=1),
    "return_receipt_timeout": timedelta(hours=1),
}


def policy_for(order: PlannedOrder, review_above: Decimal, return_window: timedelta) -> OrderPolicy:
    own: dict[str, timedelta] = {}
    if order.role == Role.cancel_in_window:
        own["release_delay"] = RELEASE_WINDOW
    elif order.role == Role.backorder_timeout:
        own["backorder_timeout"] = SHORT_TIMEOUT
    elif order.role == Role.lost_timeout:
        own["exception_timeout"] = SHORT_TIMEOUT
    elif order.role in RETURN_ROLES:
        own["return_window"] = return_window
    assert bool(own) == order.spec.own_policy, order.role
    return OrderPolicy(**(DEFAULT_POLICY | own), review_above=review_above)


def api_settings_env(review_above: Decimal) -> dict[str, str]:
    """The API's OMS_* settings that make its policy DEFAULT_POLICY (what POST /orders places under)."""
    env = {f"OMS_{name.upper()}": f"{value.total_seconds():g}s" for name, value in DEFAULT_POLICY.items()}
    return env | {"OMS_REVIEW_ABOVE": str(review_above), "OMS_SHORT_PICK_POLICY": "backorder"}
