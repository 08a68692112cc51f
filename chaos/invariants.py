"""What must hold after a fault-injection run, read from the database (the ledgers, not the workflows):
every order in its expected state, the stock ledger clean and conserved, money moved exactly once per
reason, one carrier booking per shipment, no reservation left behind. Each finding is one line naming
the order and what the ledger says.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from decimal import Decimal

from sqlalchemy import select

from chaos.orders import PlannedOrder
from db import SessionFactory
from domain.stock import check_stock
from models import tables as t
from models.catalog import CatalogFile
from models.workflow_names import order_workflow_id, step_key

SHIPPED = ("shipped", "delivered")


def violations(sessions: SessionFactory, orders: list[PlannedOrder], catalog: CatalogFile) -> list[str]:
    found = [f"stock ledger: {problem}" for problem in check_stock(sessions)]
    ids = [o.order_id for o in orders]
    with sessions() as session:
        rows = {o.id: o for o in session.scalars(select(t.Order).where(t.Order.id.in_(ids)))}
        payments = _by_order(session.scalars(select(t.Payment).where(t.Payment.order_id.in_(ids))))
        shipments = _by_order(session.scalars(select(t.Shipment).where(t.Shipment.order_id.in_(ids))))
        reservations = _by_order(
            session.scalars(select(t.Reservation).where(t.Reservation.order_id.in_(ids)))
        )
        lines = _by_order(session.scalars(select(t.OrderLine).where(t.OrderLine.order_id.in_(ids))))
        events = _by_order(session.scalars(select(t.OrderEvent).where(t.OrderEvent.order_id.in_(ids))))
        bookings = {b.idempotency_key: b for b in session.scalars(select(t.CarrierBooking))}
        stock = {(s.sku, s.warehouse): s for s in session.scalars(select(t.Stock))}

    booking_keys = set()
    for planned in orders:
        oid = planned.order_id
        row = rows.get(oid)
        if row is None:
            found.append(f"{oid} ({planned.role}): never recorded in the orders table")
            continue
        if row.status != planned.expected:
            found.append(f"{oid} ({planned.role}): ended {row.status}, expected {planned.expected}")
        found += _money(oid, row, payments[oid], shipments[oid])
        found += _bookings(oid, row, shipments[oid], bookings, booking_keys)
        found += _reservations(oid, row, reservations[oid])
        seqs = sorted(e.seq for e in events[oid])
        if seqs != list(range(1, len(seqs) + 1)):
            found.append(f"{oid}: its event log has gaps or repeats (seq {seqs})")
    found += [f"carrier booking {key} belongs to no shipment" for key in sorted(set(bookings) - booking_keys)]
    found += _stock_conserved(catalog, stock, rows, lines, reservations)
    return found


def outcomes(sessions: SessionFactory, orders: list[PlannedOrder]) -> Counter[str]:
    with sessions() as session:
        statuses = session.scalars(select(t.Order.status).where(t.Order.id.in_([o.order_id for o in orders])))
        return Counter(statuses)


def _by_order(rows) -> defaultdict[str, list]:  # type: ignore[no-untyped-def,type-arg]
    grouped: defaultdict[str, list] = defaultdict(list)  # type: ignore[type-arg]
    for row in rows:
        grouped[row.order_id].append(row)
    return grouped


def _money(oid: str, order: t.Order, payments: list[t.Payment], shipments: list[t.Shipment]) -> list[str]:
    """At most one authorization and one void; one capture per shipped shipment, one refund per capture;
    captured <= authorized, refunded <= captured; what the customer paid in the end matches the outcome."""
    found = []
    approved = [p for p in payments if p.status == "approved"]
    count = Counter(p.kind for p in approved)
    total = {kind: sum((Decimal(p.amount) for p in approved if p.kind == kind), Decimal(0)) for kind in count}
    authorized, captured = total.get("authorization", Decimal(0)), total.get("capture", Decimal(0))
    refunded = total.get("refund", Decimal(0))
    ledger = f"ledger: {dict(count)}, authorized {authorized}, captured {captured}, refunded {refunded}"
    shipped = [s for s in shipments if s.status in SHIPPED]
    workflow = order_workflow_id(oid)
    if count["authorization"] > 1 or count["void"] > 1:
        found.append(f"{oid}: authorized or voided more than once; {ledger}")
    if count["capture"] > len(shipped):
        found.append(f"{oid}: {count['capture']} captures for {len(shipped)} shipped shipments; {ledger}")
    if count["refund"] > count["capture"]:
        found.append(f"{oid}: {count['refund']} refunds for {count['capture']} captures; {ledger}")
    shipment_ids = {s.id for s in shipments}
    for p in approved:
        if (
            p.kind == "capture"
            and p.idempotency_key.removeprefix(step_key(workflow, "capture:")) not in shipment_ids
        ):
            found.append(
                f"{oid}: capture {p.reference} ({p.idempotency_key}) is for no shipment of the order"
            )
    if captured > authorized or refunded > captured:
        found.append(f"{oid}: captured > authorized or refunded > captured; {ledger}")
    if order.status == "completed" and not (
        captured == authorized == Decimal(order.total or 0) and not refunded
    ):
        found.append(
            f"{oid}: completed, but the customer was not charged its total {order.total} once; {ledger}"
        )
    if order.status in ("cancelled", "rejected"):
        if captured != refunded:
            found.append(f"{oid}: {order.status}, yet {captured - refunded} stays charged; {ledger}")
        if authorized > captured and not count["void"]:
            found.append(f"{oid}: {order.status}, yet its authorization was never voided; {ledger}")
    return found


def _bookings(
    oid: str,
    order: t.Order,
    shipments: list[t.Shipment],
    bookings: dict[str, t.CarrierBooking],
    seen: set[str],
) -> list[str]:
    """One booking per shipment that left, with its tracking number; none left standing for an order
    that did not ship."""
    found = []
    for shipment in shipments:
        key = step_key(order_workflow_id(oid), f"ship:{shipment.id}")
        booking = bookings.get(key)
        if booking is not None:
            seen.add(key)
        if shipment.status in SHIPPED:
            if booking is None or booking.status != "booked":
                found.append(f"{oid}: shipment {shipment.id} left without a standing carrier booking")
            elif booking.tracking_number != shipment.tracking_number:
                found.append(
                    f"{oid}: shipment {shipment.id} has tracking {shipment.tracking_number}, "
                    f"its booking {booking.tracking_number}"
                )
        elif booking is not None and booking.status == "booked" and order.status in ("cancelled", "rejected"):
            found.append(f"{oid}: {order.status}, yet the booking of {shipment.id} was never cancelled")
        if order.status == "completed" and shipment.status != "delivered":
            found.append(f"{oid}: completed, yet shipment {shipment.id} is {shipment.status}")
    return found


def _reservations(oid: str, order: t.Order, reservations: list[t.Reservation]) -> list[str]:
    if order.status not in ("completed", "cancelled", "rejected"):
        return []
    found = [
        f"{oid}: {order.status}, yet reservation {r.id} ({r.quantity} x {r.sku}) is still {r.status}"
        for r in reservations
        if r.status == "active" or (r.status == "picked" and order.status != "completed")
    ]
    if order.status == "completed" and any(r.status != "picked" for r in reservations):
        found.append(f"{oid}: completed, yet reservations are {[r.status for r in reservations]}")
    return found


def _stock_conserved(
    catalog: CatalogFile,
    stock: dict[tuple[str, str], t.Stock],
    orders: dict[str, t.Order],
    lines: dict[str, list[t.OrderLine]],
    reservations: dict[str, list[t.Reservation]],
) -> list[str]:
    """Per sku: on hand now = loaded - units of the completed orders (cancelled ones put theirs back);
    nothing reserved once every order has ended."""
    found = []
    loaded = {(s.sku, s.warehouse): s.on_hand for s in catalog.stock}
    shipped: Counter[tuple[str, str]] = Counter()
    ordered: Counter[str] = Counter()
    for oid, order in orders.items():
        if order.status != "completed":
            continue
        for r in reservations[oid]:
            shipped[(r.sku, r.warehouse)] += r.quantity
        for line in lines[oid]:
            ordered[line.sku] += line.quantity
    by_sku: Counter[str] = Counter()
    for (sku, _), qty in shipped.items():
        by_sku[sku] += qty
    if by_sku != ordered:
        found.append(
            f"completed orders ordered {dict(ordered - by_sku)} more / {dict(by_sku - ordered)} fewer units than they picked"
        )
    for key, row in sorted(stock.items()):
        expected = loaded.get(key, 0) - shipped[key]
        if (row.on_hand, row.reserved) != (expected, 0):
            found.append(
                f"stock {key[0]}@{key[1]}: on hand {row.on_hand}, reserved {row.reserved}; "
                f"expected {expected} on hand (loaded {loaded.get(key, 0)} - {shipped[key]} shipped), 0 reserved"
            )
    return found
