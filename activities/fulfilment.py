"""Packing, carrier booking and delivery records for shipments."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import refuse
from adapters.carrier import Booking, Carrier, CarrierRefused, CarrierUnavailable
from db import SessionFactory
from models import tables as t
from models.fulfilment import AddressChange, AddressChangeAnswer, FulfilmentRequest
from models.orders import ShipmentStatus
from models.steps import (
    ClaimRecord,
    DeliveryRecord,
    ErrorType,
    HandoverResult,
    LabelResult,
    PackRecord,
    PackResult,
    RelabelRequest,
    ShipmentRef,
    ShipRequest,
    ShipResult,
    TrackingRecord,
)
from models.workflow_names import order_workflow_id, step_key

if TYPE_CHECKING:
    from adapters.carrier import CarrierTracking
    from adapters.warehouse import Warehouse

PACKAGING_WEIGHT_G = 150


class FulfilmentActivities:
    def __init__(
        self,
        sessions: SessionFactory,
        carrier: Carrier,
        warehouse: Warehouse | None = None,
        tracking: CarrierTracking | None = None,
    ) -> None:
        self._sessions = sessions
        self._carrier = carrier
        self._warehouse = warehouse
        self._tracking = tracking

    @activity.defn
    def pack_shipment(self, ref: ShipmentRef) -> PackResult:
        """Weigh the parcel from the picked lines and print its label (same result on a repeat)."""

        def weigh(session: Session) -> list[int]:
            rows = session.execute(
                select(t.Reservation.quantity, t.Product.weight_g)
                .join(t.Product, t.Product.sku == t.Reservation.sku)
                .where(t.Reservation.shipment_id == ref.shipment_id, t.Reservation.status == "picked")
            ).all()
            return [PACKAGING_WEIGHT_G + sum(qty * weight for qty, weight in rows)]

        return self._pack(ref.order_id, ref.shipment_id, weigh, keep_parcels=False)

    def _pack(
        self, order_id: str, shipment_id: str, weigh: Callable[[Session], list[int]], keep_parcels: bool
    ) -> PackResult:
        """Pack once: the parcels' weights (from `weigh`), the label; a repeat answers the same."""
        with self._sessions.begin() as session:
            shipment = session.get(t.Shipment, shipment_id)
            if shipment is None:
                raise RuntimeError(f"unknown shipment {shipment_id}")
            if shipment.packed_at is None:
                order = session.get(t.Order, order_id)
                assert order is not None
                parcels = weigh(session)
                if keep_parcels:
                    shipment.parcels_g = parcels
                shipment.weight_g = sum(parcels)
                shipment.label = _label(shipment, order.shipping_address, len(parcels))
                shipment.status = ShipmentStatus.packed.value
                shipment.packed_at = t.utcnow()
            assert shipment.weight_g is not None and shipment.label is not None
            return PackResult(weight_g=shipment.weight_g, label=shipment.label)

    @activity.defn
    def ship_shipment(self, request: ShipRequest) -> ShipResult:
        """Book the carrier (idempotent per shipment) and record the tracking number."""
        booking = self._book(request)
        with self._sessions.begin() as session:
            shipment = session.get(t.Shipment, request.shipment_id)
            assert shipment is not None
            shipped_at = shipment.shipped_at
            if shipped_at is None:
                shipment.carrier, shipment.tracking_number = booking.carrier, booking.tracking_number
                shipped_at = _ship(shipment)
            return ShipResult(
                carrier=booking.carrier,
                tracking_number=booking.tracking_number,
                shipped_at=shipped_at,
            )

    def _book(self, request: ShipRequest, booking: str | None = None) -> Booking:
        """`booking`: the step keying it, when not the shipment's first (`ship:<shipment id>`)."""
        key = step_key(order_workflow_id(request.order_id), booking or f"ship:{request.shipment_id}")
        try:
            return self._carrier.book(key, request.weight_g, request.address.postal_code)
        except CarrierRefused as exc:
            raise refuse(ErrorType.carrier_refused, str(exc)) from exc
        except CarrierUnavailable as exc:
            raise ApplicationError(str(exc), type="CarrierUnavailable") from exc

    # ---- warehouses and carriers as parties ----

    @activity.defn
    async def release_shipment(self, request: FulfilmentRequest) -> None:
        """Send the pick list to the warehouse (idempotent per shipment); the shipment joins its queue."""
        await asyncio.to_thread(self._mark_released, request)
        if self._warehouse is not None:
            await self._warehouse.release(request)

    def _mark_released(self, request: FulfilmentRequest) -> None:
        with self._sessions.begin() as session:
            shipment = session.get(t.Shipment, request.shipment_id)
            if shipment is not None and shipment.released_at is None:
                shipment.status = ShipmentStatus.released.value
                shipment.released_at = request.released_at

    @activity.defn
    def record_pack(self, record: PackRecord) -> PackResult:
        """The warehouse packed the picked units into parcels of these weights."""
        return self._pack(
            record.order_id, record.shipment_id, lambda _: list(record.parcels_g), keep_parcels=True
        )

    @activity.defn
    async def book_carrier(self, request: ShipRequest) -> LabelResult:
        """Book the carrier for a packed shipment: its label (tracking number) goes on the parcels. With
        `track`, also ask the carrier to report on the parcel (both idempotent: a retry books and asks
        nothing twice)."""
        label = await asyncio.to_thread(self._book_label, request)
        if request.track and self._tracking is not None:
            await self._tracking.start_tracking(label.tracking_number, request.order_id, request.shipment_id)
        return label

    def _book_label(self, request: ShipRequest) -> LabelResult:
        booking = self._book(request)
        label_ref = booking.label_ref or f"LBL-{booking.tracking_number}"
        with self._sessions.begin() as session:
            shipment = session.get(t.Shipment, request.shipment_id)
            assert shipment is not None
            if shipment.tracking_number is None:
                shipment.carrier, shipment.tracking_number = booking.carrier, booking.tracking_number
                shipment.label_ref = label_ref
        return LabelResult(
            carrier=booking.carrier, tracking_number=booking.tracking_number, label_ref=label_ref
        )

    @activity.defn
    async def change_address(self, request: AddressChange) -> AddressChangeAnswer:
        """Ask the shipment's warehouse whether it may go to another address (idempotent per key). No
        warehouse adapter (a worker without parties): the manual warehouse's rule."""
        if self._warehouse is None:
            from adapters.warehouse import ManualWarehouse

            return await ManualWarehouse().change_address(request)
        return await self._warehouse.change_address(request)

    @activity.defn
    async def relabel_shipment(self, request: RelabelRequest) -> LabelResult:
        """A packed parcel to a new address: a new booking (the carrier may refuse the new postal code,
        a business refusal, and then nothing changed), the old one cancelled, the shipments row's label
        printed again. Repeatable: bookings are keyed by their step, the row is set to the same values."""
        label = await asyncio.to_thread(self._relabel, request)
        if request.track and self._tracking is not None:
            await self._tracking.start_tracking(label.tracking_number, request.order_id, request.shipment_id)
        return label

    def _relabel(self, request: RelabelRequest) -> LabelResult:
        ship = ShipRequest(
            order_id=request.order_id,
            shipment_id=request.shipment_id,
            warehouse=request.warehouse,
            weight_g=request.weight_g,
            address=request.address,
        )
        booking = self._book(ship, request.booking)
        self._carrier.cancel(step_key(order_workflow_id(request.order_id), request.replaces))
        label_ref = booking.label_ref or f"LBL-{booking.tracking_number}"
        with self._sessions.begin() as session:
            shipment = session.get(t.Shipment, request.shipment_id)
            assert shipment is not None
            shipment.carrier, shipment.tracking_number = booking.carrier, booking.tracking_number
            shipment.label_ref = label_ref
            shipment.label = _label(shipment, request.address.model_dump(), request.parcels)
        return LabelResult(
            carrier=booking.carrier, tracking_number=booking.tracking_number, label_ref=label_ref
        )

    @activity.defn
    def record_handover(self, ref: ShipmentRef) -> HandoverResult:
        with self._sessions.begin() as session:
            shipment = session.get(t.Shipment, ref.shipment_id)
            assert shipment is not None
            return HandoverResult(shipped_at=shipment.shipped_at or _ship(shipment))

    @activity.defn
    def record_tracking_event(self, record: TrackingRecord) -> None:
        """Keep a carrier event once (by tracking number and event id); move the shipment's status."""
        with self._sessions.begin() as session:
            seen = session.scalar(
                select(t.TrackingEvent.id).where(
                    t.TrackingEvent.tracking_number == record.tracking_number,
                    t.TrackingEvent.event_id == record.event_id,
                )
            )
            if seen is None:
                session.add(
                    t.TrackingEvent(
                        tracking_number=record.tracking_number,
                        event_id=record.event_id,
                        shipment_id=record.shipment_id,
                        type=record.type,
                        at=record.at,
                        place=record.place,
                    )
                )
            shipment = session.get(t.Shipment, record.shipment_id)
            if shipment is not None and record.shipment_status is not None:
                shipment.status = record.shipment_status
                if record.shipment_status == ShipmentStatus.delivered.value and shipment.delivered_at is None:
                    shipment.delivered_at = record.at

    @activity.defn
    def record_claim(self, claim: ClaimRecord) -> None:
        """A claim against the carrier for a parcel it lost or sent back (once per shipment). It is lodged
        once the case is settled (support's reship or refund, or the timeout's refund), so the shipments
        row leaves `exception` for `resolved` with it, as the order's own view does."""
        with self._sessions.begin() as session:
            shipment = session.get(t.Shipment, claim.shipment_id)
            if shipment is not None and shipment.status == ShipmentStatus.exception.value:
                shipment.status = ShipmentStatus.resolved.value
            exists = session.scalar(
                select(t.CarrierClaim.id).where(t.CarrierClaim.shipment_id == claim.shipment_id)
            )
            if exists is None:
                session.add(
                    t.CarrierClaim(
                        order_id=claim.order_id,
                        shipment_id=claim.shipment_id,
                        tracking_number=claim.tracking_number,
                        reason=claim.reason,
                        amount=claim.amount,
                    )
                )

    @activity.defn
    def cancel_carrier_booking(self, ref: ShipmentRef) -> bool:
        booking = ref.booking or f"ship:{ref.shipment_id}"
        return self._carrier.cancel(step_key(order_workflow_id(ref.order_id), booking))

    @activity.defn
    def record_delivery(self, delivery: DeliveryRecord) -> None:
        with self._sessions.begin() as session:
            shipment = session.get(t.Shipment, delivery.shipment_id)
            if shipment is not None and shipment.delivered_at is None:
                shipment.status = ShipmentStatus.delivered.value
                shipment.delivered_at = delivery.delivered_at


def _ship(shipment: t.Shipment) -> datetime:
    shipment.status = ShipmentStatus.shipped.value
    shipment.shipped_at = t.utcnow()
    return shipment.shipped_at


def _label(shipment: t.Shipment, address: dict[str, Any], parcels: int) -> str:
    """The address label: shipment, origin, weight (and parcel count), and where it goes."""
    pieces = f" | {parcels} parcels" if parcels > 1 else ""
    return (
        f"{shipment.id} | from {shipment.warehouse} | {shipment.weight_g} g{pieces}\n"
        f"{address['name']}\n{address['line1']}\n"
        + (f"{address['line2']}\n" if address.get("line2") else "")
        + f"{address['postal_code']} {address['city']}\n{address['country']}"
    )
