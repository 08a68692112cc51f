"""Reserving, releasing and picking stock for orders."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import refuse
from db import SessionFactory
from domain.allocation import plan_allocation
from domain.stock import low_stock_in, request_count, stock_on_order
from domain.stock_ledger import move
from models import tables as t
from models.orders import ShipmentLine, ShipmentStatus
from models.steps import (
    AllocatedShipment,
    ErrorType,
    KeepUnits,
    PickOutcome,
    PickRecord,
    ReserveRequest,
    ShipmentRef,
    StockKey,
)

RESERVE_ATTEMPTS = 8


class _LostRace(Exception):
    """A conditional update found less stock than planned: another order got there first."""


class InventoryActivities:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn
    def reserve_stock(self, request: ReserveRequest) -> list[AllocatedShipment]:
        """Reserve every line, all or nothing, one shipment per warehouse used."""
        wanted: dict[str, int] = defaultdict(int)
        for line in request.lines:
            wanted[line.sku] += line.quantity
        for _ in range(RESERVE_ATTEMPTS):
            try:
                with self._sessions.begin() as session:
                    if existing := _existing_allocation(session, request):
                        return existing
                    return _reserve(session, request, dict(wanted))
            except _LostRace:
                continue
        raise ApplicationError(
            f"stock for order {request.order_id} is under heavy contention; retrying", type="StockContention"
        )

    @activity.defn
    def release_stock(self, ref: ShipmentRef) -> int:
        """Release the active reservations of a shipment; returns the units released (0 on a repeat)."""
        with self._sessions.begin() as session:
            released = _release(session, _reservations(session, ref, "active"))
            _set_shipment(session, ref.shipment_id, ShipmentStatus.cancelled, only_if_not_shipped=True)
            return released

    @activity.defn
    def return_order_stock(self, order_id: str) -> int:
        """The last compensation of an order that failed: release every reservation it still holds and
        put back what it picked for a parcel that never left the warehouse. Its own undos have done this
        for every step it knows of; what is left was booked by a local step of a workflow task lost with
        its worker, whose order then took another turn (a cancellation came first) and never ran that
        step again. Returns the units returned: 0 almost always, and on a repeat."""
        whole_order = ShipmentRef(order_id=order_id, shipment_id="")
        with self._sessions.begin() as session:
            in_warehouse = set(
                session.scalars(
                    select(t.Shipment.id).where(
                        t.Shipment.order_id == order_id, t.Shipment.shipped_at.is_(None)
                    )
                )
            )
            active = _reservations(session, whole_order, "active")
            picked = [
                r for r in _reservations(session, whole_order, "picked") if r.shipment_id in in_warehouse
            ]
            returned = _release(session, active) + _restock_reservations(session, picked, "its order failed")
            for shipment_id in sorted({r.shipment_id for r in active + picked}):
                _set_shipment(session, shipment_id, ShipmentStatus.cancelled, only_if_not_shipped=True)
            return returned

    @activity.defn
    def pick_stock(self, ref: ShipmentRef) -> int:
        """Turn the shipment's reservations into a deduction of on-hand stock; returns the units picked."""
        with self._sessions.begin() as session:
            picked = sum(r.quantity for r in _reservations(session, ref, "picked"))  # by an earlier attempt
            for r in _reservations(session, ref, "active"):
                if not move(
                    session,
                    r.sku,
                    r.warehouse,
                    "pick",
                    on_hand=-r.quantity,
                    reserved=-r.quantity,
                    order_id=r.order_id,
                ):
                    raise RuntimeError(f"stock for {r.sku}@{r.warehouse} disagrees with reservation {r.id}")
                r.status = "picked"
                picked += r.quantity
            shipment = session.get(t.Shipment, ref.shipment_id)
            if shipment is not None and shipment.picked_at is None:
                shipment.status = ShipmentStatus.picking.value
                shipment.picked_at = t.utcnow()
            return picked

    @activity.defn
    def restock_picked(self, ref: ShipmentRef) -> int:
        """Undo a pick that will not ship: the units go back on the shelf (a restock movement)."""
        with self._sessions.begin() as session:
            restocked = _restock(session, ref, f"{ref.shipment_id} not shipped")
            _set_shipment(session, ref.shipment_id, ShipmentStatus.cancelled, only_if_not_shipped=True)
            return restocked

    @activity.defn
    def keep_units(self, request: KeepUnits) -> int:
        """A partial cancellation: cut the shipment's reservations down to `request.keep`; what goes is
        released (reserved) or put back on the shelf (picked). Returns the units moved (0 on a repeat)."""
        keep = {line.sku: line.quantity for line in request.keep}
        ref = ShipmentRef(order_id=request.order_id, shipment_id=request.shipment_id)
        reason = f"{request.shipment_id}: {request.why}"
        moved = 0
        with self._sessions.begin() as session:
            for status in ("active", "picked"):
                for r in _reservations(session, ref, status):
                    going = r.quantity - min(keep.get(r.sku, 0), r.quantity)
                    if not going:
                        continue
                    if status == "active":
                        ok = move(
                            session, r.sku, r.warehouse, "release", reserved=-going, order_id=r.order_id
                        )
                    else:
                        ok = move(
                            session,
                            r.sku,
                            r.warehouse,
                            "restock",
                            on_hand=going,
                            order_id=r.order_id,
                            reason=reason,
                        )
                    if not ok:
                        raise RuntimeError(
                            f"stock for {r.sku}@{r.warehouse} disagrees with reservation {r.id}"
                        )
                    if going == r.quantity:  # the whole row goes: it keeps its quantity, for the record
                        r.status = "released" if status == "active" else "restocked"
                    else:
                        r.quantity -= going
                    moved += going
            if not any(keep.values()):
                _set_shipment(
                    session, request.shipment_id, ShipmentStatus.cancelled, only_if_not_shipped=True
                )
            return moved

    @activity.defn
    def restock_returned(self, ref: ShipmentRef) -> int:
        """The carrier brought a parcel back to its warehouse: its units are on the shelf again."""
        with self._sessions.begin() as session:
            return _restock(session, ref, f"{ref.shipment_id} returned to sender")

    @activity.defn
    def record_pick(self, record: PickRecord) -> PickOutcome:
        """Book what the warehouse found: each line's found units picked; units it did not find come off
        the books as well (`adjust`, naming the pick), since the shelf count that promised them was wrong.
        A repeat answers the same from what the first booked."""
        found = {sku: max(0, qty) for sku, qty in record.found.items()}
        ref = ShipmentRef(order_id=record.order_id, shipment_id=record.shipment_id)
        with self._sessions.begin() as session:
            for r in _reservations(session, ref, "active"):
                picked = min(found.get(r.sku, r.quantity), r.quantity)
                short = r.quantity - picked
                if picked and not move(
                    session,
                    r.sku,
                    r.warehouse,
                    "pick",
                    on_hand=-picked,
                    reserved=-picked,
                    order_id=r.order_id,
                ):
                    raise RuntimeError(f"stock for {r.sku}@{r.warehouse} disagrees with reservation {r.id}")
                if short and not move(
                    session,
                    r.sku,
                    r.warehouse,
                    "adjust",
                    on_hand=-short,
                    reserved=-short,
                    order_id=r.order_id,
                    reason=f"short pick of {record.shipment_id}: shelf count corrected",
                ):
                    raise RuntimeError(f"stock for {r.sku}@{r.warehouse} disagrees with reservation {r.id}")
                if short:
                    request_count(session, r.sku, r.warehouse, f"short pick of {record.shipment_id}")
                if picked:
                    r.quantity, r.status = picked, "picked"
                else:  # nothing found: the row keeps what was reserved, for the record
                    r.status = "short"
            shipment = session.get(t.Shipment, record.shipment_id)
            if shipment is not None and shipment.picked_at is None:
                shipment.status = ShipmentStatus.picked.value
                shipment.picked_at = t.utcnow()
            booked: dict[str, int] = defaultdict(int)
            for r in _reservations(session, ref, "picked"):
                booked[r.sku] += r.quantity
        picked_lines = [ShipmentLine(sku=sku, quantity=qty) for sku, qty in sorted(booked.items())]
        missing = [
            ShipmentLine(sku=line.sku, quantity=line.quantity - booked.get(line.sku, 0))
            for line in record.ordered
            if line.quantity > booked.get(line.sku, 0)
        ]
        return PickOutcome(picked=picked_lines, missing=missing)


def _restock(session: Session, ref: ShipmentRef, reason: str) -> int:
    return _restock_reservations(session, _reservations(session, ref, "picked"), reason)


def _restock_reservations(session: Session, picked: list[t.Reservation], reason: str) -> int:
    for r in picked:
        move(session, r.sku, r.warehouse, "restock", on_hand=r.quantity, order_id=r.order_id, reason=reason)
        r.status = "restocked"
    return sum(r.quantity for r in picked)


def _release(session: Session, active: list[t.Reservation]) -> int:
    for r in active:
        if not move(session, r.sku, r.warehouse, "release", reserved=-r.quantity, order_id=r.order_id):
            raise RuntimeError(f"stock for {r.sku}@{r.warehouse} disagrees with reservation {r.id}")
        r.status = "released"
    return sum(r.quantity for r in active)


def _reserve(session: Session, request: ReserveRequest, wanted: dict[str, int]) -> list[AllocatedShipment]:
    # Purchase orders first, stock second: a receipt committing in between shows as stock, never as neither.
    on_order = stock_on_order(session, wanted)
    warehouses = list(
        session.scalars(select(t.Warehouse.code).order_by(t.Warehouse.priority, t.Warehouse.code))
    )
    rows = session.execute(
        select(t.Stock.sku, t.Stock.warehouse, t.Stock.on_hand - t.Stock.reserved).where(
            t.Stock.sku.in_(wanted)
        )
    ).all()
    available = {(sku, wh): qty for sku, wh, qty in rows}
    plan, short = plan_allocation(wanted, available, warehouses, take_last=request.take_last)
    if short:
        detail = ", ".join(f"{sku} short by {qty}" for sku, qty in sorted(short.items()))
        shortage = {
            "short": sorted(short),
            "on_order": {sku: on_order[sku] for sku in short if sku in on_order},
        }
        raise refuse(ErrorType.out_of_stock, f"out of stock: {detail}", shortage)

    # Lock rows in one global order (sku, warehouse) so concurrent orders never deadlock.
    for sku, warehouse in sorted((sku, wh) for wh, part in plan.items() for sku in part):
        if not move(
            session, sku, warehouse, "reserve", reserved=plan[warehouse][sku], order_id=request.order_id
        ):
            raise _LostRace()
    shipments = []
    ordered = [w for w in warehouses if w in plan]
    for n, warehouse in enumerate(ordered, start=request.numbers_from):
        shipment_id = f"{request.shipment_prefix}{n}"
        session.add(
            t.Shipment(
                id=shipment_id,
                order_id=request.order_id,
                warehouse=warehouse,
                status=ShipmentStatus.allocated.value,
            )
        )
        lines = [ShipmentLine(sku=sku, quantity=qty) for sku, qty in sorted(plan[warehouse].items())]
        session.add_all(
            t.Reservation(
                order_id=request.order_id,
                shipment_id=shipment_id,
                sku=line.sku,
                warehouse=warehouse,
                quantity=line.quantity,
                status="active",
            )
            for line in lines
        )
        shipments.append(AllocatedShipment(id=shipment_id, warehouse=warehouse, lines=lines))
    return _with_low_stock(session, shipments)


def _with_low_stock(session: Session, shipments: list[AllocatedShipment]) -> list[AllocatedShipment]:
    """Each shipment with its pairs now at or below their reorder point: read after the reservation, in
    its transaction (rows it updated are locked), so the last order to take stock sees it low."""
    keys = [StockKey(sku=line.sku, warehouse=s.warehouse) for s in shipments for line in s.lines]
    low = {(x.sku, x.warehouse) for x in low_stock_in(session, keys)}
    for s in shipments:
        s.low_stock = [
            StockKey(sku=x.sku, warehouse=s.warehouse) for x in s.lines if (x.sku, s.warehouse) in low
        ]
    return shipments


def _existing_allocation(session: Session, request: ReserveRequest) -> list[AllocatedShipment]:
    """A repeated reserve returns what the first one reserved."""
    rows = session.scalars(
        select(t.Reservation)
        .where(
            t.Reservation.order_id == request.order_id,
            t.Reservation.shipment_id.startswith(request.shipment_prefix, autoescape=True),
        )
        .order_by(t.Reservation.shipment_id, t.Reservation.sku)
    ).all()
    grouped: dict[str, AllocatedShipment] = {}
    for r in rows:
        number = r.shipment_id.removeprefix(request.shipment_prefix)
        if not number.isdigit() or int(number) < request.numbers_from:
            continue  # an earlier reservation of the same order: not this request's
        shipment = grouped.setdefault(
            r.shipment_id, AllocatedShipment(id=r.shipment_id, warehouse=r.warehouse, lines=[])
        )
        shipment.lines.append(ShipmentLine(sku=r.sku, quantity=r.quantity))
    return _with_low_stock(session, list(grouped.values()))


def _reservations(session: Session, ref: ShipmentRef, status: str) -> list[t.Reservation]:
    query = select(t.Reservation).where(
        t.Reservation.order_id == ref.order_id, t.Reservation.status == status
    )
    if ref.shipment_id:
        query = query.where(t.Reservation.shipment_id == ref.shipment_id)
    return list(session.scalars(query.order_by(t.Reservation.sku, t.Reservation.warehouse).with_for_update()))


def _set_shipment(
    session: Session, shipment_id: str, status: ShipmentStatus, only_if_not_shipped: bool
) -> None:
    if not shipment_id:
        return
    shipment = session.get(t.Shipment, shipment_id)
    if shipment is None or (only_if_not_shipped and shipment.shipped_at is not None):
        return
    shipment.status = status.value
