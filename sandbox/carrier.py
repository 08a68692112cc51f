"""The sandbox carrier: a `Carrier` booking parcels in its own ledger (`carrier_bookings`), and a
`CarrierTracking` that carries each parcel (adapters/carrier.py has both interfaces).

Booking is idempotent per key. A postal code of `REFUSE` makes the carrier refuse the booking
(a business refusal), so the failure paths can be exercised like a real carrier's.

Tracking (`OMS_SANDBOX_CARRIER=auto`): a SandboxCarrierWorkflow per parcel (sandbox/workflows.py)
reports its events to the order as a real carrier would.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from adapters.carrier import (
    Booking,
    CarrierRefused,
    CarrierTracking,
    CarrierUnavailable,
    ManualCarrierTracking,
)
from config import SandboxMode, Settings
from db import SessionFactory
from models.shipping import BookingStatus
from models.tables import CarrierBooking
from models.workflow_names import SANDBOX_CARRIER_WORKFLOW, sandbox_carrier_workflow_id

CARRIER_NAME = "sandbox-post"
REFUSED_POSTAL_CODE = "REFUSE"

log = logging.getLogger(__name__)


def label_ref_of(tracking_number: str) -> str:
    """The reference of a booking's shipping label. Derived, not stored: carrier_bookings has no column
    for it, and one label per tracking number is all the sandbox carrier prints."""
    return f"LBL-{tracking_number}"


def _booking_of(row: CarrierBooking) -> Booking:
    """The carrier's answer: a copy of its ledger's row (no database session attached)."""
    status, label_ref = BookingStatus(row.status), label_ref_of(row.tracking_number)
    return Booking(row.idempotency_key, row.carrier, row.tracking_number, status, row.weight_g, label_ref)


class SandboxCarrier:
    name = CARRIER_NAME

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def book(self, key: str, weight_g: int, postal_code: str) -> Booking:
        with self._sessions.begin() as session:
            if (
                done := session.scalar(select(CarrierBooking).where(CarrierBooking.idempotency_key == key))
            ) is not None:
                return _booking_of(done)
            if postal_code.upper() == REFUSED_POSTAL_CODE:
                raise CarrierRefused(f"carrier {self.name} does not serve postal code {postal_code}")
            booking = CarrierBooking(
                idempotency_key=key,
                carrier=self.name,
                tracking_number=f"SBX{secrets.randbelow(10**12):012d}",
                status=BookingStatus.booked.value,
                weight_g=weight_g,
            )
            session.add(booking)
            try:
                session.flush()
            except IntegrityError as exc:
                raise CarrierUnavailable("booking collided; retry") from exc
            return _booking_of(booking)

    def cancel(self, key: str) -> bool:
        """Cancel a booking; False when there was nothing to cancel."""
        with self._sessions.begin() as session:
            booking = session.scalar(select(CarrierBooking).where(CarrierBooking.idempotency_key == key))
            if booking is None:
                return False
            booking.status = BookingStatus.cancelled.value
            return True

    def booking(self, tracking_number: str) -> Booking | None:
        """The booking of a tracking number, as the carrier's ledger has it."""
        with self._sessions() as session:
            row = session.scalar(
                select(CarrierBooking).where(CarrierBooking.tracking_number == tracking_number)
            )
            return None if row is None else _booking_of(row)


# ---- tracking ----


class SandboxParcel(BaseModel):
    """The input of a SandboxCarrierWorkflow: everything it needs, so that it is deterministic."""

    tracking_number: str
    order_id: str
    shipment_id: str
    transit_time: timedelta
    loss_rate: float


class SandboxCarrierTracking:
    """The sandbox carrier carries the parcel: a SandboxCarrierWorkflow on the sandbox parties' task
    queue."""

    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings

    async def start_tracking(self, tracking_number: str, order_id: str, shipment_id: str) -> None:
        parcel = SandboxParcel(
            tracking_number=tracking_number,
            order_id=order_id,
            shipment_id=shipment_id,
            transit_time=self._settings.sandbox_transit_time,
            loss_rate=self._settings.sandbox_loss_rate,
        )
        await start_sandbox_party(
            self._client,
            SANDBOX_CARRIER_WORKFLOW,
            parcel,
            workflow_id=sandbox_carrier_workflow_id(tracking_number),
            task_queue=self._settings.sandbox_task_queue,
            summary=f"sandbox carrier: parcel {tracking_number} of shipment {shipment_id}",
        )


def tracking_for(settings: Settings, client: Client) -> CarrierTracking:
    """The sandbox carrier reports (`OMS_SANDBOX_CARRIER=auto`), or a person does (`manual`)."""
    if settings.sandbox_carrier == SandboxMode.auto:
        return SandboxCarrierTracking(client, settings)
    return ManualCarrierTracking()


async def start_sandbox_party(
    client: Client, workflow: str, arg: BaseModel, *, workflow_id: str, task_queue: str, summary: str
) -> None:
    """Start a sandbox party's workflow (the carrier's here, the warehouse's in sandbox/warehouse.py)
    at most once per id: a repeat (an activity's retry, a second
    release) starts nothing and raises nothing, whether the first run is still going or has ended.
    A party that ran once must never run again: it would send its reports a second time."""
    try:
        await client.start_workflow(
            workflow,
            arg,
            id=workflow_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,  # ended: do not run it again
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,  # running: that one is it
            static_summary=summary,  # ids only: summaries are stored in clear
        )
    except WorkflowAlreadyStartedError:
        log.debug("%s already ran; not started again", workflow_id)
