"""Warehouses and carriers as parties of their own: what they are sent, and what they report back.

A released shipment is a fulfilment request (a pick list) to its warehouse. The warehouse reports, in
order: `picked` (per line, possibly short), `packed` (parcels with their weights), `handed_over` (to the
carrier). The carrier then reports tracking events by tracking number, each with its own event id.
Reports reach the order's workflow as updates (models/workflow_names.py `OrderUpdate`); a duplicate or
out-of-order report is refused with the reason and changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from models.orders import (
    Actor,
    Address,
    ExternalId,
    Identifier,
    OptionalText,
    ShipmentLine,
    Timestamp,
    TrackingNumber,
)
from models.shipping import CarrierEventType, Resolution

MAX_PARCELS = 50
MAX_PARCEL_WEIGHT_G = 1_000_000  # a tonne: beyond any parcel carrier


ParcelWeight = Annotated[int, Field(strict=True, ge=1, le=MAX_PARCEL_WEIGHT_G)]  # grams


class ReportRefusal(StrEnum):
    """`type` of the errors the order's update validators refuse a report with."""

    refused = "ReportRefused"  # duplicate, out of order, or the order is past it: for good
    too_early = "ReportTooEarly"  # a fine report the order is not ready for yet: retry later


class _Report(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class WarehouseStep(StrEnum):
    picked = "picked"
    packed = "packed"
    handed_over = "handed_over"


class PickedLine(_Report):
    sku: Identifier
    quantity: Annotated[int, Field(strict=True, ge=0, le=100_000)]  # 0: none found on the shelf


class WarehouseReport(_Report):
    """One step of a released shipment, as the warehouse reports it (WMS webhook, CLI, sandbox)."""

    shipment_id: Identifier
    step: WarehouseStep
    # picked: units found per line; lines left out were picked in full. Fewer than ordered = a short pick.
    # packed straight after the release confirms the pick too, with these lines (one WMS confirmation).
    lines: list[PickedLine] = []
    # packed: one weight per parcel, in grams
    parcels_g: list[ParcelWeight] = Field(default=[], max_length=MAX_PARCELS)
    report_id: ExternalId | None = None  # the sender's own id
    by: Actor = None


class FulfilmentRequest(BaseModel):
    """What a warehouse is sent when a shipment is released: the pick list."""

    order_id: str
    shipment_id: str
    warehouse: str
    lines: list[ShipmentLine]
    released_at: datetime


class AddressChange(BaseModel):
    """Asking a released shipment's warehouse to send it to another address (an order edit after release,
    docs/orders.md#order-edits). `labelled`: the order has printed the parcel's label (it was reported
    packed), so the parcel needs a new one. `key`: the same key again is the same request (idempotent);
    a request undoing an accepted one (another warehouse refused) has a key of its own."""

    order_id: str
    shipment_id: str
    warehouse: str
    address: Address
    labelled: bool
    key: str


class AddressChangeAnswer(BaseModel):
    """The warehouse's answer, with its reason in words (a refusal's reason is told to support)."""

    accepted: bool
    reason: str


DeliveryAttempt = Annotated[int, Field(strict=True, ge=1, le=10)]


class CarrierEvent(_Report):
    """One tracking event. Idempotent by (tracking number, event id)."""

    tracking_number: TrackingNumber
    type: CarrierEventType
    event_id: ExternalId
    at: Timestamp
    place: OptionalText | None = None
    attempt: DeliveryAttempt | None = None  # delivery_failed: which attempt
    by: Actor = None


class ResolveRequest(_Report):
    """Support's choice for a parcel that was lost or came back."""

    shipment_id: Identifier
    resolution: Resolution
    by: Actor = None


class ReportOutcome(BaseModel):
    """The answer to a report: what it changed, in words."""

    order_id: str
    shipment_id: str
    detail: str
