"""The carrier's webhook: tracking events by tracking number."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Carrier
from api.errors import ApiError, ErrorBody
from api.routes import JSON_BODY
from api.state import AppState, app_state
from domain.shipments import shipment_by_tracking
from models.orders import ShipmentStatus
from services import orders

router = APIRouter(tags=["carrier"])


class CarrierEventType(StrEnum):
    delivered = "delivered"


class CarrierEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    tracking_number: Annotated[str, Field(min_length=1, max_length=40)]
    type: CarrierEventType
    event_id: Annotated[str, Field(max_length=100)] | None = None  # the carrier's own id, for its logs


class CarrierEventResult(BaseModel):
    order_id: str
    shipment_id: str
    duplicate: bool  # True: the shipment was already delivered; nothing changed


@router.post(
    "/carrier/events",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[JSON_BODY],
    responses={
        200: {"model": CarrierEventResult, "description": "already delivered: nothing changed (idempotent)"},
        404: {"model": ErrorBody, "description": "unknown tracking number"},
        409: {"model": ErrorBody, "description": "the shipment is not on its way (e.g. cancelled)"},
    },
    summary="A tracking event from the carrier",
)
async def carrier_event(
    event: CarrierEvent, who: Carrier, state: Annotated[AppState, Depends(app_state)], response: Response
) -> CarrierEventResult:
    """A delivery confirmation by tracking number. Sending it again is harmless: the answer is 200
    with `duplicate: true` and nothing changes."""
    found = await run_in_threadpool(shipment_by_tracking, state.reads, event.tracking_number)
    if found is None:
        raise ApiError(404, "not_found", f"unknown tracking number {event.tracking_number}")
    view = await orders.order_view(state.client, found.order_id)
    shipment = next((s for s in view.shipments if s.id == found.shipment_id), None)
    if shipment is not None and shipment.status == ShipmentStatus.delivered:
        response.status_code = status.HTTP_200_OK
        return CarrierEventResult(order_id=found.order_id, shipment_id=found.shipment_id, duplicate=True)
    await orders.confirm_delivery(state.client, found.order_id, found.shipment_id, by=who.name)
    return CarrierEventResult(order_id=found.order_id, shipment_id=found.shipment_id, duplicate=False)
