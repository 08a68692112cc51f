"""Packing, carrier booking and delivery records for shipments."""

from __future__ import annotations

from sqlalchemy import select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import refuse
from adapters.carrier import CarrierRefused, CarrierUnavailable, SandboxCarrier
from db import SessionFactory
from models import tables as t
from models.orders import ShipmentStatus
from models.steps import DeliveryRecord, ErrorType, PackResult, ShipmentRef, ShipRequest, ShipResult
from models.workflow_names import order_workflow_id, step_key

PACKAGING_WEIGHT_G = 150


class FulfilmentActivities:
    def __init__(self, sessions: SessionFactory, carrier: SandboxCarrier) -> None:
        self._sessions = sessions
        self._carrier = carrier

    @activity.defn
    def pack_shipment(self, ref: ShipmentRef) -> PackResult:
        """Weigh the parcel from the picked lines and print its label (same result on a repeat)."""
        with self._sessions.begin() as session:
            shipment = session.get(t.Shipment, ref.shipment_id)
            if shipment is None:
                raise RuntimeError(f"unknown shipment {ref.shipment_id}")
            if shipment.packed_at is None:
                rows = session.execute(
                    select(t.Reservation.quantity, t.Product.weight_g)
                    .join(t.Product, t.Product.sku == t.Reservation.sku)
                    .where(t.Reservation.shipment_id == ref.shipment_id, t.Reservation.status == "picked")
                ).all()
                order = session.get(t.Order, ref.order_id)
                assert order is not None
                address = order.shipping_address
                shipment.weight_g = PACKAGING_WEIGHT_G + sum(qty * weight for qty, weight in rows)
                shipment.label = (
                    f"{shipment.id} | from {shipment.warehouse} | {shipment.weight_g} g\n"
                    f"{address['name']}\n{address['line1']}\n"
                    + (f"{address['line2']}\n" if address.get("line2") else "")
                    + f"{address['postal_code']} {address['city']}\n{address['country']}"
                )
                shipment.status = ShipmentStatus.packed.value
                shipment.packed_at = t.utcnow()
            assert shipment.weight_g is not None and shipment.label is not None
            return PackResult(weight_g=shipment.weight_g, label=shipment.label)

    @activity.defn
    def ship_shipment(self, request: ShipRequest) -> ShipResult:
        """Book the carrier (idempotent per shipment) and record the tracking number."""
        key = step_key(order_workflow_id(request.order_id), f"ship:{request.shipment_id}")
        try:
            booking = self._carrier.book(key, request.weight_g, request.address.postal_code)
        except CarrierRefused as exc:
            raise refuse(ErrorType.carrier_refused, str(exc)) from exc
        except CarrierUnavailable as exc:
            raise ApplicationError(str(exc), type="CarrierUnavailable") from exc
        with self._sessions.begin() as session:
            shipment = session.get(t.Shipment, request.shipment_id)
            assert shipment is not None
            if shipment.shipped_at is None:
                shipment.carrier, shipment.tracking_number = booking.carrier, booking.tracking_number
                shipment.status = ShipmentStatus.shipped.value
                shipment.shipped_at = t.utcnow()
            return ShipResult(
                carrier=booking.carrier,
                tracking_number=booking.tracking_number,
                shipped_at=shipment.shipped_at,
            )

    @activity.defn
    def cancel_carrier_booking(self, ref: ShipmentRef) -> bool:
        return self._carrier.cancel(step_key(order_workflow_id(ref.order_id), f"ship:{ref.shipment_id}"))

    @activity.defn
    def record_delivery(self, delivery: DeliveryRecord) -> None:
        with self._sessions.begin() as session:
            shipment = session.get(t.Shipment, delivery.shipment_id)
            if shipment is not None and shipment.delivered_at is None:
                shipment.status = ShipmentStatus.delivered.value
                shipment.delivered_at = delivery.delivered_at
