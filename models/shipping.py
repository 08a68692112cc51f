"""Words shared by an order's view and the reports of warehouses and carriers (models/fulfilment.py)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel

from models.choices import CarrierEventType
from models.choices import Resolution as Resolution  # re-exported: its users import it from here

DELIVERY_ATTEMPTS = 3  # failed delivery attempts after which the carrier sends a parcel back


# Events that end a parcel's journey without a delivery: support chooses reship or refund.
PARCEL_LOST = frozenset({CarrierEventType.lost, CarrierEventType.returned_to_sender})


class TrackingEvent(BaseModel):
    """A carrier event as the order's view shows it."""

    type: CarrierEventType
    at: datetime
    place: str | None = None
    event_id: str
    attempt: int | None = None


class BookingStatus(StrEnum):
    """A carrier booking in the carrier's ledger."""

    booked = "booked"
    cancelled = "cancelled"  # the order was cancelled before the handover: nothing to carry


class ShortPickPolicy(StrEnum):
    """What happens to units a warehouse could not find, when no other warehouse has them."""

    backorder = "backorder"  # wait for stock on order (the backorder rules), else cancel those lines
    cancel_lines = "cancel_lines"  # cancel those lines at once: the customer would rather not wait
