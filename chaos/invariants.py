"""What must hold after a fault-injection run, read from the database (the ledgers, not the workflows).

What each order must leave is worked out from its role and from what the run did with it (units it
returned, a path it could not take), never from the ledger rows the system wrote: units that left the
shelf (delivered, lost, reshipped, counted out by a short pick; back with a good return or a parcel
returned to sender), what stays charged, what was refunded, the carrier claims and returns it has, and
evidence that it took its path (a pick and a restock for a cancellation after the pick, a cancelled
booking after the pack, a re-allocation after a short pick...).

Each finding is one line `invariant: what the ledger says`, the invariant one of INVARIANTS.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select

from chaos.orders import AUTO, MANUAL, Plan, PlannedOrder, Role
from db import SessionFactory
from domain.money_invariants import check_money
from domain.stock import check_stock
from models import tables as t
from models.events import OrderEventType, PaymentKind
from models.order_money import split
from models.orders import OrderStatus, ReturnStatus, ShipmentLine
from models.workflow_names import order_workflow_id, step_key

INVARIANTS = {
    "driven": "the run drove the order to its end (it did not get stuck; its workflow completed)",
    "outcome": "the order ended as its role says",
    "stock-ledger": "levels equal their movements, reserved equals the open reservations, none left behind",
    "stock-conserved": "per SKU, on hand = loaded + booked in - units that left with the orders' paths",
    "nothing-reserved": "once every order has ended, nothing is reserved",
    "reservations": "an ended order holds no active reservation; a cancelled one no picked units",
    "money": "authorized >= captured (+ voided) >= refunded; the finance journal equals the payments ledger",
    "payments": "one authorization and at most one void; each capture for a parcel that left, at most once",
    "charged": "captured as the path charges (the total, less units not shipped); what is left voided",
    "refunds": "refunded exactly what the path refunds (returns, lost parcels), nothing otherwise",
    "bookings": "one standing carrier booking per parcel that left; none for a cancelled order's",
    "shipments": "an ended order's shipments are delivered, resolved or cancelled",
    "claims": "one carrier claim per lost or returned parcel, for its value; none otherwise",
    "returns": "a return is received in the condition sent and closed with its refund",
    "path": "the order took its role's path (the movements, events and shipments that show it)",
    "event-log": "each order's event log has no gaps",
}
SHIPPED = ("shipped", "delivered")
FINAL_SHIPMENT = frozenset({"delivered", "resolved", "cancelled"})
ENDED = ("completed", "cancelled", "rejected")


def invariant_of(violation: str) -> str:
    name = violation.split(":", 1)[0]
    return name if name in INVARIANTS else "other"


@dataclass
class Expected:
    """What an order must leave, from its role and what the run did."""

    out: Counter[str]  # units per SKU that left the shelf for good
    captured: Decimal
    refunded: Decimal
    claim: str | None = None  # the reason of its one carrier claim


def expected(order: PlannedOrder, prices: dict[str, Decimal]) -> Expected:
    ordered: Counter[str] = Counter()
    for line in order.order.lines:
        ordered[line.sku] += line.quantity
    first = order.order.lines[0].sku
    total, zero = order.total, Decimal(0)
    if order.expected in (OrderStatus.cancelled, OrderStatus.rejected):
        return Expected(Counter(), zero, zero)
    role = order.role if order.on_path else Role.visa
    if role in (Role.short_realloc, Role.short_backorder):  # one unit counted out, shipped from elsewhere
        return Expected(ordered + Counter({first: 1}), total, zero)
    if role == Role.short_cancel:  # one unit counted out and not sent: not charged, nor its shipping share
        money = order.order.money([prices[x.sku] for x in order.order.lines])
        kept = [ShipmentLine(sku=sku, quantity=q) for sku, q in (ordered - Counter({first: 1})).items()]
        missing = [ShipmentLine(sku=first, quantity=1)]
        _, value = split(total, [money.value_of(kept), money.value_of(missing)])  # one parcel: the rule's
        return Expected(ordered, total - value, zero)
    if role in (Role.return_good, Role.return_damaged):
        back = Counter({first: order.returned}) if role == Role.return_good else Counter()
        return Expected(ordered - back, total, prices[first] * order.returned)
    if role == Role.lost_reship:  # the lost parcel and its replacement
        return Expected(ordered + ordered, total, zero, claim="lost")
    if role == Role.lost_refund:
        return Expected(ordered, total, total, claim="lost")
    if role == Role.lost_timeout:  # returned to sender: back on the shelf
        return Expected(Counter(), total, total, claim="returned_to_sender")
    return Expected(ordered, total, zero)


@dataclass
class Ledgers:
    rows: dict[str, t.Order]
    payments: defaultdict[str, list[t.Payment]]
    shipments: defaultdict[str, list[t.Shipment]]
    reservations: defaultdict[str, list[t.Reservation]]
    events: defaultdict[str, list[t.OrderEvent]]
    movements: defaultdict[str, list[t.StockMovement]]
    claims: defaultdict[str, list[t.CarrierClaim]]
    returns: defaultdict[str, list[t.Return]]
    notifications: defaultdict[str, list[t.Notification]]
    bookings: dict[str, t.CarrierBooking]
    stock: dict[tuple[str, str], t.Stock]
    received: Counter[str]  # units booked in per SKU (the run's receipts)


def read_ledgers(sessions: SessionFactory, ids: list[str]) -> Ledgers:
    with sessions() as session:

        def per_order(model) -> defaultdict[str, list]:  # type: ignore[no-untyped-def,type-arg]
            return _by_order(session.scalars(select(model).where(model.order_id.in_(ids))))

        received: Counter[str] = Counter()
        for m in session.scalars(select(t.StockMovement).where(t.StockMovement.kind == "receive")):
            received[m.sku] += m.on_hand_delta
        return Ledgers(
            rows={o.id: o for o in session.scalars(select(t.Order).where(t.Order.id.in_(ids)))},
            payments=per_order(t.Payment),
            shipments=per_order(t.Shipment),
            reservations=per_order(t.Reservation),
            events=per_order(t.OrderEvent),
            movements=per_order(t.StockMovement),
            claims=per_order(t.CarrierClaim),
            returns=per_order(t.Return),
            notifications=per_order(t.Notification),
            bookings={b.idempotency_key: b for b in session.scalars(select(t.CarrierBooking))},
            stock={(s.sku, s.warehouse): s for s in session.scalars(select(t.Stock))},
            received=received,
        )


def violations(sessions: SessionFactory, plan: Plan, orders: list[PlannedOrder] | None = None) -> list[str]:
    orders = plan.orders if orders is None else orders
    found = [f"stock-ledger: {problem}" for problem in check_stock(sessions)]
    found += [f"money: {problem}" for problem in check_money(sessions, [o.order_id for o in orders])]
    ledgers = read_ledgers(sessions, [o.order_id for o in orders])
    prices = plan.prices
    booking_keys: set[str] = set()
    out: Counter[str] = Counter()
    for planned in orders:
        oid = planned.order_id
        row = ledgers.rows.get(oid)
        if row is None:
            found.append(f"outcome: {oid} ({planned.role}) never recorded in the orders table")
            continue
        want = expected(planned, prices)
        out += want.out
        found += check_order(planned, row, want, ledgers, booking_keys)
    found += [
        f"bookings: carrier booking {key} belongs to no shipment"
        for key in sorted(set(ledgers.bookings) - booking_keys)
    ]
    found += _stock_conserved(plan, ledgers, out)
    return found


def check_order(
    planned: PlannedOrder, row: t.Order, want: Expected, ledgers: Ledgers, booking_keys: set[str]
) -> list[str]:
    oid = planned.order_id
    tag = f"{oid} ({planned.role}{'' if planned.on_path else ', off its path'})"
    found = []
    if row.status != planned.expected:
        found.append(f"outcome: {tag} ended {row.status}, expected {planned.expected}")
    shipments = ledgers.shipments[oid]
    found += _money(tag, oid, row, want, ledgers.payments[oid], shipments)
    found += _bookings(tag, oid, row, shipments, ledgers.bookings, booking_keys)
    if row.status in ENDED:
        found += [
            f"shipments: {tag} is {row.status}, yet shipment {s.id} is {s.status}"
            for s in shipments
            if s.status not in FINAL_SHIPMENT
        ]
        found += _reservations(tag, row, ledgers.reservations[oid])
    claims = ledgers.claims[oid]
    if [c.reason for c in claims] != ([want.claim] if want.claim else []):
        found.append(
            f"claims: {tag} has claims {[(c.shipment_id, c.reason) for c in claims]}, expected {want.claim}"
        )
    elif want.claim and Decimal(claims[0].amount) != planned.total:
        found.append(f"claims: {tag} claimed {claims[0].amount} for its parcel, its value is {planned.total}")
    found += _returns(tag, planned, want, ledgers.returns[oid])
    if planned.on_path and row.status == planned.expected:
        found += [f"path: {tag} {gap}" for gap in path_gaps(planned, ledgers)]
    seqs = sorted(e.seq for e in ledgers.events[oid])
    if seqs != list(range(1, len(seqs) + 1)):
        found.append(f"event-log: {tag} has gaps or repeats (seq {seqs})")
    return found


def _by_order(rows: Iterable) -> defaultdict[str, list]:  # type: ignore[type-arg]
    grouped: defaultdict[str, list] = defaultdict(list)  # type: ignore[type-arg]
    for row in rows:
        grouped[row.order_id].append(row)
    return grouped


def _money(
    tag: str, oid: str, order: t.Order, want: Expected, payments: list[t.Payment], shipments: list[t.Shipment]
) -> list[str]:
    found = []
    approved = [p for p in payments if p.status == "approved"]
    count = Counter(p.kind for p in approved)
    total = {kind: sum((Decimal(p.amount) for p in approved if p.kind == kind), Decimal(0)) for kind in count}
    authorized = sum((total.get(kind, Decimal(0)) for kind in PaymentKind.holds()), Decimal(0))
    captured, voided = total.get(PaymentKind.capture, Decimal(0)), total.get(PaymentKind.void, Decimal(0))
    refunded = sum((total.get(kind, Decimal(0)) for kind in PaymentKind.refunds()), Decimal(0))
    ledger = f"ledger: {dict(count)}, authorized {authorized}, captured {captured}, refunded {refunded}"
    left = {s.id for s in shipments if s.shipped_at is not None}  # handed to the carrier
    prefix = step_key(order_workflow_id(oid), "capture:")
    if count[PaymentKind.authorization] > 1:
        found.append(f"payments: {tag} authorized more than once; {ledger}")
    keys = Counter(p.idempotency_key for p in approved if p.kind == PaymentKind.capture)
    for key, n in keys.items():
        shipment = key.removeprefix(prefix)
        if shipment not in left:
            found.append(f"payments: {tag} captured for {shipment}, which never left the warehouse; {ledger}")
        if n > 1:
            found.append(f"payments: {tag} captured {shipment} {n} times; {ledger}")
    if order.status not in ENDED:
        return found
    if count[PaymentKind.authorization] and authorized != Decimal(order.total or 0):
        found.append(f"charged: {tag} authorized {authorized}, its total is {order.total}; {ledger}")
    if captured != want.captured:
        found.append(f"charged: {tag} captured {captured}, its path charges {want.captured}; {ledger}")
    if authorized > captured + voided:
        found.append(
            f"charged: {tag} {authorized - captured - voided} authorized and not charged was never voided; "
            + ledger
        )
    if refunded != want.refunded:
        found.append(f"refunds: {tag} refunded {refunded}, its path refunds {want.refunded}; {ledger}")
    return found


def _bookings(
    tag: str,
    oid: str,
    order: t.Order,
    shipments: list[t.Shipment],
    bookings: dict[str, t.CarrierBooking],
    seen: set[str],
) -> list[str]:
    """One standing booking per shipment that left, with its tracking number; none left standing for an
    order that did not ship."""
    found = []
    for shipment in shipments:
        key = step_key(order_workflow_id(oid), f"ship:{shipment.id}")
        booking = bookings.get(key)
        if booking is not None:
            seen.add(key)
        if shipment.status in SHIPPED:
            if booking is None or booking.status != "booked":
                found.append(
                    f"bookings: {tag} shipment {shipment.id} left without a standing carrier booking"
                )
            elif booking.tracking_number != shipment.tracking_number:
                found.append(
                    f"bookings: {tag} shipment {shipment.id} has tracking {shipment.tracking_number}, "
                    f"its booking {booking.tracking_number}"
                )
        elif booking is not None and booking.status == "booked" and order.status in ("cancelled", "rejected"):
            found.append(f"bookings: {tag} is {order.status}, yet the booking of {shipment.id} stands")
    return found


def _reservations(tag: str, order: t.Order, reservations: list[t.Reservation]) -> list[str]:
    return [
        f"reservations: {tag} is {order.status}, yet reservation {r.id} ({r.quantity} x {r.sku}) is {r.status}"
        for r in reservations
        if r.status == "active" or (r.status == "picked" and order.status != "completed")
    ]


def _returns(tag: str, planned: PlannedOrder, want: Expected, returns: list[t.Return]) -> list[str]:
    if not planned.returned:
        return [f"returns: {tag} has return {r.rma}, the run asked for none" for r in returns]
    condition = "good" if planned.role == Role.return_good else "damaged"
    if len(returns) != 1:
        return [f"returns: {tag} has returns {[r.rma for r in returns]}, the run asked for one"]
    (ret,) = returns
    if (ret.status, ret.condition, Decimal(ret.refund_amount)) != (
        ReturnStatus.refunded,
        condition,
        want.refunded,
    ):
        return [
            f"returns: {tag} return {ret.rma} is {ret.status}, {ret.condition}, refunded {ret.refund_amount}; "
            f"expected refunded, {condition}, {want.refunded}"
        ]
    return []


def path_gaps(planned: PlannedOrder, ledgers: Ledgers) -> list[str]:
    """What the ledgers lack to show that the order took its role's path (empty: it did)."""
    oid, role = planned.order_id, planned.role
    kinds = Counter(m.kind for m in ledgers.movements[oid])
    events = {e.type for e in ledgers.events[oid]}
    shipments = ledgers.shipments[oid]
    warehouses = {s.warehouse for s in shipments if s.status == "delivered"}
    bookings = [ledgers.bookings.get(step_key(order_workflow_id(oid), f"ship:{s.id}")) for s in shipments]
    restocked_return = any(
        m.kind == "restock" and "return" in (m.reason or "") for m in ledgers.movements[oid]
    )
    gaps = []

    def need(ok: bool, what: str) -> None:
        if not ok:
            gaps.append(what)

    def reached(status_event: str) -> bool:
        """In its events; or in a workflow task lost with its worker, which told the customer (the
        outbox keeps the message) while the order's history went another way (the stock arrived, the
        cancel came first): the run saw it and acted on it."""
        return status_event in events or any(n.kind == status_event for n in ledgers.notifications[oid])

    if role == Role.cancel_in_window:
        need(
            kinds["reserve"] > 0 and kinds["release"] > 0,
            f"reserved and released its stock (movements {dict(kinds)})",
        )
        need(kinds["pick"] == 0, "was never picked")
        need(all(s.released_at is None for s in shipments), "was never sent to a warehouse")
    elif role in (Role.cancel_after_pick, Role.cancel_after_pack):
        need(
            kinds["pick"] > 0 and kinds["restock"] > 0, f"was picked and restocked (movements {dict(kinds)})"
        )
        booked = [b for b in bookings if b is not None]
        if role == Role.cancel_after_pick:
            need(not booked, "was never booked with the carrier")
        else:
            need(
                bool(booked) and all(b.status == "cancelled" for b in booked),
                "had its carrier booking cancelled",
            )
    elif role == Role.manual:
        need(warehouses == {MANUAL}, f"was delivered from {MANUAL} (from {sorted(warehouses)})")
    elif role == Role.split:
        need(
            len(warehouses) == 2, f"was delivered in two shipments from two warehouses ({sorted(warehouses)})"
        )
    elif role in (Role.short_realloc, Role.short_backorder, Role.short_cancel):
        need(kinds["adjust"] > 0, "had its shelf count corrected for the unit not found")
        if role == Role.short_cancel:
            need("lines_cancelled" in events, "had the unit not found cancelled")
        else:
            need(
                {MANUAL, AUTO} <= warehouses, f"was delivered from {MANUAL} and {AUTO} ({sorted(warehouses)})"
            )
        if role == Role.short_backorder:
            need(
                any("backordered as" in e.detail for e in ledgers.events[oid]),
                "had the unit not found backordered",
            )
    elif role in (Role.backorder_filled, Role.backorder_timeout):
        need(reached(OrderEventType.order_backordered), "was backordered")
    elif role in (Role.hold_release, Role.hold_cancel):
        need(reached(OrderEventType.order_on_hold), "was held")
    elif role == Role.return_good:
        need(restocked_return, "had its returned units restocked")
    elif role == Role.return_damaged:
        need(
            not restocked_return and planned.returned > 0,
            "had its returned units written off (never restocked)",
        )
    elif role == Role.lost_reship:
        need(len(warehouses) == 1 and len(shipments) >= 2, "was reshipped after the loss")
    elif role == Role.lost_timeout:
        need(kinds["restock"] > 0, "had its returned parcel restocked")
    return gaps


def _stock_conserved(plan: Plan, ledgers: Ledgers, out: Counter[str]) -> list[str]:
    found = []
    loaded: Counter[str] = Counter()
    for (sku, _), qty in plan.loaded.items():
        loaded[sku] += qty
    on_hand: Counter[str] = Counter()
    for (sku, wh), row in sorted(ledgers.stock.items()):
        on_hand[sku] += row.on_hand
        if row.reserved:
            found.append(f"nothing-reserved: {sku}@{wh} has {row.reserved} reserved after every order ended")
    for sku in sorted(set(loaded) | set(on_hand)):
        want = loaded[sku] + ledgers.received[sku] - out[sku]
        if on_hand[sku] != want:
            found.append(
                f"stock-conserved: {sku} has {on_hand[sku]} on hand, expected {want} "
                f"(loaded {loaded[sku]} + booked in {ledgers.received[sku]} - {out[sku]} gone with its orders)"
            )
    return found


def outcomes(sessions: SessionFactory, orders: list[PlannedOrder]) -> Counter[str]:
    with sessions() as session:
        statuses = session.scalars(select(t.Order.status).where(t.Order.id.in_([o.order_id for o in orders])))
        return Counter(statuses)


def paths_covered(orders: list[PlannedOrder], found: list[str]) -> dict[str, tuple[int, int]]:
    """Per role: (orders that took its path and were found right, orders planned with it)."""
    wrong = {o.order_id for o in orders if any(o.order_id in line for line in found)}
    covered: dict[str, list[int]] = {}
    for o in orders:
        tally = covered.setdefault(o.role.value, [0, 0])
        tally[1] += 1
        tally[0] += o.on_path and o.order_id not in wrong
    return {role: (n, of) for role, (n, of) in covered.items()}
