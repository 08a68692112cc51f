"""The carrier: booking parcels (`Carrier`) and reporting on them (`CarrierTracking`).

Booking is idempotent per key. Tracking: with the label, the order asks the carrier to report on the
parcel. The carrier's events come back as `carrier_event` updates of the order
(services/fulfilment.py), whoever sends them: a person (`manual`: the `carrier-event` command, the
carrier endpoint) or the sandbox carrier (`auto`, sandbox/carrier.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from models.shipping import BookingStatus


class CarrierRefused(Exception):
    """The carrier will not carry this parcel (e.g. a postal code it does not serve): final."""


class CarrierUnavailable(Exception):
    """A transient failure: the same booking with the same key may be retried."""


@dataclass(frozen=True)
class Booking:
    """A carrier booking as the carrier answers it (a copy: no database session is attached)."""

    idempotency_key: str
    carrier: str
    tracking_number: str
    status: BookingStatus
    weight_g: int
    label_ref: str


class Carrier(Protocol):
    """Books parcels; raises CarrierRefused and CarrierUnavailable."""

    def book(self, key: str, weight_g: int, postal_code: str) -> Booking:
        """Book a parcel and buy its label. The same key again returns the same booking."""
        ...

    def cancel(self, key: str) -> bool:
        """Cancel the booking made with `key`; False when there was nothing to cancel."""
        ...


class CarrierTracking(Protocol):
    async def start_tracking(self, tracking_number: str, order_id: str, shipment_id: str) -> None:
        """Ask the carrier to report on a parcel, when its label is bought. Idempotent per tracking number;
        returns fast (the events come later, as updates of the order, from the carrier's pickup on)."""
        ...


class ManualCarrierTracking:
    """Nothing to ask: a person reports the carrier's events (CLI, API)."""

    async def start_tracking(self, tracking_number: str, order_id: str, shipment_id: str) -> None:
        return None
