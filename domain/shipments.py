"""Shipments as carriers and warehouses know them: by tracking number, in a warehouse's queue, and
weighed into parcels."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from db import SessionFactory
from models import tables as t
from models.fulfilment import MAX_PARCEL_WEIGHT_G, MAX_PARCELS
from models.orders import ShipmentLine, ShipmentStatus

PACKAGING_WEIGHT_G = 150  # box and filling, per parcel
PARCEL_LIMIT_G = 20_000  # what one parcel may weigh, packaging included


@dataclass(frozen=True)
class TrackedShipment:
    order_id: str
    shipment_id: str


def shipment_by_tracking(sessions: SessionFactory, tracking_number: str) -> TrackedShipment | None:
    with sessions() as session:
        row = session.execute(
            select(t.Shipment.order_id, t.Shipment.id).where(t.Shipment.tracking_number == tracking_number)
        ).first()
    return TrackedShipment(order_id=row[0], shipment_id=row[1]) if row else None


# ---- a warehouse's queue ----

# Released to the warehouse and not yet handed over: the work waiting there.
QUEUED_STATUSES = (ShipmentStatus.released, ShipmentStatus.picked, ShipmentStatus.packed)


class QueuedShipment(BaseModel):
    """A shipment waiting at its warehouse, with its pick list."""

    model_config = ConfigDict(frozen=True)

    order_id: str
    shipment_id: str
    status: ShipmentStatus
    released_at: datetime | None
    lines: list[ShipmentLine]
    label_ref: str | None = None  # printed once the carrier is booked (after `packed`)


class UnknownWarehouse(LookupError):
    def __init__(self, code: str) -> None:
        super().__init__(f"unknown warehouse {code}")


def warehouse_queue(sessions: SessionFactory, warehouse: str) -> list[QueuedShipment]:
    """The shipments released to `warehouse` and not yet handed over, oldest release first. Raises
    UnknownWarehouse: a mistyped code would otherwise read as a warehouse with nothing to do."""
    with sessions() as session:
        if session.get(t.Warehouse, warehouse) is None:
            raise UnknownWarehouse(warehouse)
        shipments = session.scalars(
            select(t.Shipment)
            .where(
                t.Shipment.warehouse == warehouse,
                t.Shipment.status.in_([s.value for s in QUEUED_STATUSES]),
            )
            .order_by(t.Shipment.released_at, t.Shipment.id)
        ).all()
        lines: dict[str, list[ShipmentLine]] = {s.id: [] for s in shipments}
        if lines:
            for shipment_id, sku, quantity in session.execute(
                select(t.Reservation.shipment_id, t.Reservation.sku, t.Reservation.quantity)
                .where(t.Reservation.shipment_id.in_(lines), t.Reservation.status != "released")
                .order_by(t.Reservation.id)
            ):
                lines[shipment_id].append(ShipmentLine(sku=sku, quantity=quantity))
    return [
        QueuedShipment(
            order_id=s.order_id,
            shipment_id=s.id,
            status=ShipmentStatus(s.status),
            released_at=s.released_at,
            lines=lines[s.id],
            label_ref=s.label_ref,
        )
        for s in shipments
    ]


# ---- parcels ----


def parcel_weights(sessions: SessionFactory, lines: Iterable[ShipmentLine]) -> list[int]:
    """The parcels the picked units make, one weight each in grams: the products' catalog weights plus
    packaging, at most PARCEL_LIMIT_G per parcel. Nothing picked, no parcel."""
    picked = [line for line in lines if line.quantity > 0]
    if not picked:
        return []
    with sessions() as session:
        weights = dict(
            session.execute(
                select(t.Product.sku, t.Product.weight_g).where(t.Product.sku.in_({x.sku for x in picked}))
            )
            .tuples()
            .all()
        )
    missing = sorted({x.sku for x in picked} - weights.keys())
    if missing:
        raise LookupError(f"no catalog weight for {', '.join(missing)}")
    return split_into_parcels([(weights[x.sku], x.quantity) for x in picked])


def split_into_parcels(units: list[tuple[int, int]], limit_g: int = PARCEL_LIMIT_G) -> list[int]:
    """Pack (unit weight, quantity) pairs into parcels of at most `limit_g` each, packaging included,
    heaviest units first, filling one parcel before opening the next. A unit heavier than a parcel may
    be goes alone. Should that make more parcels than a report may carry, the parcels get bigger: a
    warehouse then uses pallets, and the report still says what was handed over."""
    room = max(limit_g - PACKAGING_WEIGHT_G, 1)
    parcels: list[int] = []  # contents only, packaging added at the end
    for weight, quantity in sorted(units, reverse=True):
        left = quantity
        while left > 0:
            if parcels and parcels[-1] + weight <= room:
                # as many as still fit in the open parcel (at least one, as checked)
                fit = min(left, (room - parcels[-1]) // weight) if weight else left
                parcels[-1] += fit * weight
            else:
                fit = min(left, room // weight) if weight else left
                fit = max(fit, 1)  # heavier than a parcel: alone
                parcels.append(fit * weight)
            left -= fit
            if len(parcels) > MAX_PARCELS:
                return split_into_parcels(units, limit_g * 2)
    return [min(contents + PACKAGING_WEIGHT_G, MAX_PARCEL_WEIGHT_G) for contents in parcels]
