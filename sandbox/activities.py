"""The sandbox warehouse's and carrier's hands: send their reports to the orders, weigh parcels.

Reports go through the client layer (services/fulfilment.py), as a WMS webhook or a person's would.
The sandbox workflows (sandbox/workflows.py) decide what to report and when; these only send.
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from db import SessionFactory
from domain.shipments import parcel_weights
from models import tables as t
from models.fulfilment import CarrierEvent, ReportRefusal, WarehouseReport
from models.orders import ShipmentLine
from models.shipping import BookingStatus
from sandbox.carrier import SandboxCarrier
from services import fulfilment
from services.orders import Refused

log = logging.getLogger(__name__)


class ReportSent(BaseModel):
    """What became of a report: taken (with the order's words), or refused for good (with the reason):
    the sandbox party then stops."""

    accepted: bool
    detail: str


class ParcelRef(BaseModel):
    tracking_number: str
    shipment_id: str


class Pickup(BaseModel):
    collected: bool  # False: the booking was cancelled, there is nothing to carry
    origin: str | None = None  # the warehouse it was collected from


NOT_HANDED_OVER = "NotHandedOver"  # collect_parcel's retryable failure: come back later


def _too_early(exc: fulfilment.ReportTooEarly) -> ApplicationError:
    """The order is not ready for the report yet: a retryable failure, so the activity's retry policy
    sends it again later (with its backoff). Benign: expected, one log line per attempt."""
    return ApplicationError(str(exc), type=ReportRefusal.too_early, category=ApplicationErrorCategory.BENIGN)


class SandboxPartyActivities:
    def __init__(self, client: Client, sessions: SessionFactory) -> None:
        self._client = client
        self._sessions = sessions

    @activity.defn
    async def send_warehouse_report(self, report: WarehouseReport) -> ReportSent:
        try:
            outcome = await fulfilment.submit_warehouse_report(
                self._client, report, update_id=_update_id(report.report_id)
            )
        except fulfilment.ReportTooEarly as exc:
            raise _too_early(exc) from None
        except (Refused, fulfilment.UnknownShipment) as exc:
            return ReportSent(accepted=False, detail=str(exc))
        return ReportSent(accepted=True, detail=outcome.detail)

    @activity.defn
    async def pack_and_report(self, report: WarehouseReport) -> ReportSent:
        """Weigh the parcels the picked units make, then send `packed` with them and the picked lines
        (it confirms the pick too). Repeatable: the same lines weigh the same, the send is idempotent."""
        parcels = await asyncio.to_thread(
            parcel_weights,
            self._sessions,
            [ShipmentLine(sku=x.sku, quantity=x.quantity) for x in report.lines],
        )
        return await self.send_warehouse_report(report.model_copy(update={"parcels_g": parcels}))

    @activity.defn
    async def send_carrier_event(self, event: CarrierEvent) -> ReportSent:
        try:
            outcome = await fulfilment.submit_carrier_event(
                self._client, self._sessions, event, update_id=_update_id(event.event_id)
            )
        except fulfilment.ReportTooEarly as exc:
            raise _too_early(exc) from None
        except (Refused, fulfilment.UnknownTracking) as exc:
            return ReportSent(accepted=False, detail=str(exc))
        return ReportSent(accepted=True, detail=outcome.detail)

    @activity.defn
    def collect_parcel(self, parcel: ParcelRef) -> Pickup:
        """The carrier's driver at the warehouse: the parcel is collected once the order has recorded its
        handover; a booking cancelled meanwhile (the order was cancelled) is never collected. Until
        either, a retryable "not handed over yet" (the workflow's retry policy comes back later)."""
        booking = SandboxCarrier(self._sessions).booking(parcel.tracking_number)
        with self._sessions() as session:
            shipment = session.get(t.Shipment, parcel.shipment_id)
            if shipment is None or (booking is not None and booking.status == BookingStatus.cancelled):
                return Pickup(collected=False)
            if shipment.shipped_at is not None:  # the order recorded the handover
                return Pickup(collected=True, origin=shipment.warehouse)
        raise ApplicationError(
            f"{parcel.tracking_number}: not handed over yet",
            type=NOT_HANDED_OVER,
            category=ApplicationErrorCategory.BENIGN,
        )


def _update_id(report_id: str | None) -> str | None:
    # The sandbox's report ids are unique per report, so they name the update: an attempt whose answer
    # was lost (worker restart, timeout) gets that answer when retried, not a "duplicate" refusal.
    return f"sandbox:{report_id}" if report_id else None
