"""Shipments as carriers know them: by tracking number."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from db import SessionFactory
from models import tables as t


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
